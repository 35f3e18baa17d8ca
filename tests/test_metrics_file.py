"""metrics.jsonl after a kill: a cut-off last line is dropped, a damaged line elsewhere is named."""
from __future__ import annotations

import pytest

from lora_nlg.train.report import MetricsError, read_metrics, truncate_metrics


def test_a_last_line_cut_by_a_kill_is_dropped_and_truncation_rewrites_the_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    truncate_metrics(path, last_step=1)
    assert path.read_text() == '{"step": 1, "loss": 2.0}\n'


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", "[" * 100_000])
def test_a_damaged_line_before_the_last_is_an_error_naming_file_and_line(tmp_path, bad):
    path = tmp_path / "metrics.jsonl"
    path.write_text(f'{{"step": 1}}\n{bad}\n{{"step": 3}}\n')
    with pytest.raises(MetricsError, match=rf"{path}:2: not a JSON object"):
        read_metrics(path)
