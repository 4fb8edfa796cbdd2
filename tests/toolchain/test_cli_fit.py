"""``toolchain fit``: the classic baselines on a wav file; user mistakes are one line and exit 2."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import speech_clip
from toolchain import cli
from toolchain.audio.audiogram import NAMED_AUDIOGRAMS
from toolchain.fitting.baselines import PROCESSORS


@pytest.fixture()
def speech_wav(tmp_path):
    x = speech_clip("test", 0, 1.0)
    p = tmp_path / "in.wav"
    sf.write(p, x, 16000, subtype="PCM_16")
    return p, sf.read(p, dtype="float32")[0]


@pytest.mark.parametrize("method", ["nalr", "wdrc"])
def test_fit_writes_the_baseline(tmp_path, speech_wav, method, capsys):
    src, x = speech_wav
    (tmp_path / "a.json").write_text('{"thresholds_db_hl": %s}' % list(NAMED_AUDIOGRAMS["N3"]))
    out = tmp_path / f"{method}.wav"
    rc = cli.main(["fit", "--audiogram", str(tmp_path / "a.json"), "--method", method, "--input", str(src),
                   "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    y, rate = sf.read(out, dtype="float32")
    assert rate == 16000 and y.shape == x.shape
    np.testing.assert_allclose(y, PROCESSORS[method](x, np.asarray(NAMED_AUDIOGRAMS["N3"]), 16000), atol=1e-6)
    assert "dB SPL" in capsys.readouterr().out


def test_fit_mistakes_are_one_line(tmp_path, speech_wav, capsys):
    src, _ = speech_wav
    out = tmp_path / "o.wav"
    cases = [
        (["--preset", "N9", "--method", "nalr"], "unknown audiogram preset 'N9'"),
        (["--preset", "N3", "--method", "fig6"], "invalid choice: 'fig6'"),
        (["--preset", "N3", "--method", "nalr", "--input", str(tmp_path / "none.wav")], "none.wav"),
        (["--preset", "N3", "--method", "nalr", "--output", str(src)], "input file"),
        (["--preset", "N3", "--method", "nalr", "--output", str(tmp_path / "no" / "o.wav")], "o.wav"),
    ]
    for extra, words in cases:
        argv = ["fit", "--input", str(src), "--output", str(out), *extra]
        try:
            rc = cli.main(argv)
        except SystemExit as e:  # argparse's own errors
            rc = e.code
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and words in err[0], (extra, err)
    bad = tmp_path / "bad.json"
    bad.write_text('{"thresholds_db_hl": [1, 2, 3]}')
    rc = cli.main(["fit", "--audiogram", str(bad), "--method", "nalr", "--input", str(src), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "got 3 thresholds" in err[0]
    assert not out.exists() and not list(tmp_path.glob(".*"))
