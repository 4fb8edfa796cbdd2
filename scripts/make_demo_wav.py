#!/usr/bin/env python3
"""Recipe for the shipped demo file ``toolchain/assets/demo_speech.wav``.

Two sentences read by two different espeak-ng talkers (voices from the corpus's held-out *test*
pool, sentences from its test split, so no trained model has heard them), 16 kHz mono PCM_16,
4.0 s. The speech is set to 65 dB SPL with the project calibration
(``toolchain.audio.levels.set_level``) and pink noise is added at 15 dB SNR
(``toolchain.audio.data.pink_noise`` + ``mix_at_snr``), from a fixed seed.

    .venv/bin/python scripts/make_demo_wav.py [--out PATH] [--seed N]

The result depends on the installed espeak-ng (synthesis may change between its releases), so
the wav is committed and this script documents how it was made.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a checkout without an installed toolchain
    sys.path.insert(0, str(REPO_ROOT))

from runtime.wavio import write_wav_atomic  # noqa: E402
from toolchain.audio.data import espeak_version, mix_at_snr, pink_noise, synth_speech  # noqa: E402
from toolchain.audio.levels import level_db_spl, set_level  # noqa: E402

SAMPLE_RATE = 16000
SECONDS = 4.0
SPEECH_LEVEL_DB_SPL = 65.0
SNR_DB = 15.0
LEAD_IN_S = 0.12  # silence before the first sentence
PAUSE_S = 0.25  # between the sentences
MIN_TAIL_S = 0.08  # at least this much silence (noise only) after the second sentence
# (text, espeak voice, variant, pitch): two talkers, a male and a female timbre.
UTTERANCES = (
    ("The doctor will see you in ten minutes.", "en-gb-x-gbcwmd", "m6", 45),
    ("We waited an hour for the table.", "en-gb-scotland", "f5", 60),
)
RATE_WPM = 170  # raised (up to _MAX_RATE) when the two sentences would not fit in SECONDS
_MAX_RATE = 230


def synthesise(rate_wpm: int) -> list[np.ndarray]:
    return [
        synth_speech(text, voice=voice, variant=variant, rate_wpm=rate_wpm, pitch=pitch,
                     sample_rate=SAMPLE_RATE)
        for text, voice, variant, pitch in UTTERANCES
    ]


def make_demo(seed: int = 2024) -> tuple[np.ndarray, int]:
    """The demo signal (float32, shape (SECONDS × SAMPLE_RATE,)) and the speaking rate used."""
    n = int(round(SECONDS * SAMPLE_RATE))
    lead, pause = int(LEAD_IN_S * SAMPLE_RATE), int(PAUSE_S * SAMPLE_RATE)
    tail = int(MIN_TAIL_S * SAMPLE_RATE)
    rate = RATE_WPM
    while True:
        first, second = synthesise(rate)
        used = lead + first.size + pause + second.size
        if used + tail <= n:
            break
        if rate >= _MAX_RATE:
            raise SystemExit(f"the demo sentences need {(used + tail) / SAMPLE_RATE:.2f} s > {SECONDS} s")
        rate += 5
    speech = np.zeros(n, dtype=np.float32)
    speech[lead:lead + first.size] = first
    start = lead + first.size + pause
    speech[start:start + second.size] = second
    clean = set_level(speech, SPEECH_LEVEL_DB_SPL)
    rng = np.random.default_rng(seed)
    noisy = mix_at_snr(clean, pink_noise(n, rng, SAMPLE_RATE), SNR_DB)
    return noisy, rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "toolchain/assets/demo_speech.wav")
    ap.add_argument("--seed", type=int, default=2024, help="noise seed (default 2024)")
    args = ap.parse_args(argv)
    x, rate = make_demo(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_wav_atomic(args.out, x, SAMPLE_RATE, "PCM_16", clip=False)
    args.out.chmod(0o644)  # written via a private temp file (0600); an asset is world-readable
    print(f"wrote {args.out}: {x.size / SAMPLE_RATE:.2f} s, {SAMPLE_RATE} Hz mono PCM_16, "
          f"{level_db_spl(x):.1f} dB SPL (speech {SPEECH_LEVEL_DB_SPL:g} dB SPL, "
          f"pink noise at {SNR_DB:g} dB SNR), {rate} wpm, peak {float(np.max(np.abs(x))):.3f}, "
          f"{args.out.stat().st_size / 1024:.0f} KiB; {espeak_version()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
