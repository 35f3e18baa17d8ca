"""What both scorer families (`e2e_official`, `geneval`) need and neither owns.

- `text_files`: line reading (the library's strict UTF-8 reader, in eval's words), the count check, and
  EvalInputError (bad input). Atomic writes are the library's (`lora_nlg.atomic`).
- `java_tools`: finding Java and the METEOR / Stanford CoreNLP jars of pycocoevalcap, running METEOR, and
  JavaToolError.

Named `evalcommon` rather than `common` or `utils`: eval/ sits first on sys.path for its scripts and tests,
so a generic name would shadow any installed package of that name in the same process.
"""
