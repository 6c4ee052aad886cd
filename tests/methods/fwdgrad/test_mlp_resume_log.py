"""The MLP experiment's log of finished groups survives a kill in the middle of a line."""

import json

from jaxlab.methods.fwdgrad._mlp import _load_done


def test_a_torn_line_is_skipped_not_fatal(tmp_path):
    log = tmp_path / "metrics.jsonl"
    done = {"settings": {"dataset": "digits"}, "row": {"method": "mean", "k": 1}}
    log.write_text(json.dumps(done) + "\n" + '{"settings": {"dataset": "dig')  # killed while writing
    assert _load_done(log) == [done]
