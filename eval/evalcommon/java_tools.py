"""Java and the jars the official metrics need: METEOR 1.5 and Stanford CoreNLP 3.4.1 (PTBTokenizer).

Both jars come from the `pycocoevalcap` PyPI package (the same files the E2E script and GenerationEval use).
Nothing here falls back to a substitute: a missing or too old Java, or a missing jar, is a JavaToolError whose
message says how to fix it.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MIN_JAVA_MAJOR = 8  # METEOR 1.5 and CoreNLP 3.4.1 are Java 8-compatible bytecode
METEOR_HEAP = "-Xmx2G"  # what both official scripts pass
# The JIT's C1 tier only: results are identical (Java arithmetic is strict), but the scoring pass no longer
# competes with C2 compiler threads; about 20% less CPU for a run on the E2E test set.
METEOR_JIT = ("-XX:+IgnoreUnrecognizedVMOptions", "-XX:TieredStopAtLevel=1")  # a HotSpot flag; others skip it
INSTALL_HINT = (
    "Install a Java runtime >= 8, e.g. `sudo apt-get install default-jre-headless` (Debian/Ubuntu), "
    "`brew install openjdk` (macOS) or `conda install openjdk`, then make `java` available on PATH "
    "or set JAVA_HOME to the JDK/JRE directory."
)


class JavaToolError(RuntimeError):
    """Java or a jar needed by a metric is missing or unusable."""


@dataclass(frozen=True)
class Jars:
    meteor: Path  # meteor-1.5.jar; finds data/paraphrase-en.gz relative to itself
    paraphrase_en: Path
    corenlp: Path  # stanford-corenlp-3.4.1.jar (edu.stanford.nlp.process.PTBTokenizer)


def _java_candidate() -> tuple[str | None, str]:
    """(path, where it came from): JAVA_HOME/bin/java when JAVA_HOME is set (an explicit choice, never
    overridden by PATH), else `java` on PATH."""
    if home := os.environ.get("JAVA_HOME"):
        return str(Path(home) / "bin" / "java"), f"JAVA_HOME={home}"
    return shutil.which("java"), "PATH"


def parse_java_major(version_output: str) -> int | None:
    """Major version from `java -version` output: '1.8.0_292' -> 8, '17.0.15' -> 17, '21' -> 21."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


@functools.cache
def find_java() -> str:
    """Path of a working `java` >= 8, or a JavaToolError saying how to install or select one."""
    java, origin = _java_candidate()
    if java is None:
        raise JavaToolError(f"Java not found (JAVA_HOME unset and no `java` on PATH); METEOR and the PTB "
                            f"tokenizer are Java programs. {INSTALL_HINT}")
    if not os.access(java, os.X_OK):
        raise JavaToolError(f"{java} (from {origin}) is not an executable file; fix or unset JAVA_HOME. "
                            f"{INSTALL_HINT}")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise JavaToolError(f"{java} (from {origin}) does not run: {e}. {INSTALL_HINT}") from None
    major = parse_java_major(out.stderr + out.stdout)
    if major is None:
        raise JavaToolError(f"{java} (from {origin}): cannot read a version from `java -version` "
                            f"({(out.stderr + out.stdout).strip()[:200]!r}). {INSTALL_HINT}")
    if major < MIN_JAVA_MAJOR:
        raise JavaToolError(f"{java} (from {origin}) is Java {major}; METEOR 1.5 and CoreNLP 3.4.1 need Java "
                            f">= {MIN_JAVA_MAJOR}. {INSTALL_HINT}")
    return java


def _pycocoevalcap_dir() -> Path:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise JavaToolError("pycocoevalcap is not installed (it ships meteor-1.5.jar and the Stanford CoreNLP "
                            "tokenizer jar): `pip install pycocoevalcap` (see requirements.txt)")
    return Path(list(spec.submodule_search_locations)[0])


@functools.cache
def find_jars() -> Jars:
    """The METEOR and CoreNLP jars shipped by pycocoevalcap; error naming the missing file."""
    root = _pycocoevalcap_dir()
    jars = Jars(meteor=root / "meteor" / "meteor-1.5.jar",
                paraphrase_en=root / "meteor" / "data" / "paraphrase-en.gz",
                corenlp=root / "tokenizer" / "stanford-corenlp-3.4.1.jar")
    for path in (jars.meteor, jars.paraphrase_en, jars.corenlp):
        if not path.is_file():
            raise JavaToolError(f"{path} is missing from the pycocoevalcap install at {root}; reinstall it: "
                                f"`pip install --force-reinstall pycocoevalcap`")
    return jars


def meteor_command(args: list[str]) -> list[str]:
    """`java -Xmx2G -jar meteor-1.5.jar ARGS...` with the checked Java and jar."""
    return [find_java(), METEOR_HEAP, *METEOR_JIT, "-jar", str(find_jars().meteor), *args]


def run_meteor(args: list[str], timeout: float = 600) -> str:
    """Run the METEOR jar once on files (e.g. [hyp, refs, '-l', 'en', '-norm', '-r', '3']) and return stdout.

    Raises JavaToolError with the jar's stderr when it exits non-zero.
    """
    cmd = meteor_command(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=timeout)
    if proc.returncode != 0:
        raise JavaToolError(f"METEOR failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}")
    return proc.stdout


def parse_meteor_final_score(stdout: str) -> float:
    """The 'Final score:' value from a METEOR file-mode run."""
    m = re.search(r"^Final score:\s+(\S+)\s*$", stdout, re.M)
    if not m:
        raise JavaToolError(f"METEOR printed no 'Final score:' line; its output ends with:\n{stdout[-2000:]}")
    return float(m.group(1))
