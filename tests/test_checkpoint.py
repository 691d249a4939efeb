"""Checkpoint and resume: `infer(..., checkpoint=path)`.

A run killed mid-way (a subprocess that exits abruptly right after its 6th
checkpoint write, mid-warmup) and one interrupted in the sampling phase must,
once resumed, return exactly the draws of an uninterrupted run with the same
seed: draws depend only on the seed and the step index, so any difference is a
bug, and the comparison is bit for bit. A damaged or foreign checkpoint file
must raise `CheckpointError` naming the path and what differs, and leave the
file as it was.
"""

import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import ppl
from ppl.errors import OptionError, PPLError
from ppl.examples import EIGHT_SCHOOLS_SIGMA, EIGHT_SCHOOLS_Y, eight_schools
from ppl.infer import checkpoint as checkpoint_module
from ppl.infer.checkpoint import CheckpointError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # short runs: r_hat/ESS warnings

ROOT = Path(__file__).resolve().parents[1]
# 80 steps: the driver's default chunk is 4 steps, so a checkpoint is written 20 times.
SETTINGS = dict(num_warmup=40, num_samples=40, num_chains=2, seed=3, progress=False)
CHUNK = 4


def model():
    return eight_schools(EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)


def meta(path):
    with np.load(path, allow_pickle=False) as f:
        return json.loads(f["meta"].tobytes().decode())


def assert_same_posterior(a, b):
    for k in a.samples:
        np.testing.assert_array_equal(a.samples[k], b.samples[k], err_msg=k)
    for k in a.sample_stats:
        np.testing.assert_array_equal(a.sample_stats[k], b.sample_stats[k], err_msg=k)
    np.testing.assert_array_equal(a.diagnostics["step_size"], b.diagnostics["step_size"])


class Interrupt(Exception):
    pass


def interrupt_after(monkeypatch, writes):
    """Make the run stop right after its `writes`-th checkpoint write."""
    save, count = checkpoint_module.Checkpoint.save, [0]

    def stop_after(self, *args):
        save(self, *args)
        count[0] += 1
        if count[0] == writes:
            raise Interrupt

    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", stop_after)


@pytest.fixture(scope="module")
def reference():
    """The uninterrupted run (no checkpoint)."""
    return ppl.infer(model(), "nuts", **SETTINGS)


@pytest.fixture(scope="module")
def finished(reference, tmp_path_factory):
    """A checkpoint file of the whole run, written by an uninterrupted run."""
    path = tmp_path_factory.mktemp("ckpt") / "done.ckpt"
    post = ppl.infer(model(), "nuts", checkpoint=path, **SETTINGS)
    assert_same_posterior(post, reference)  # writing checkpoints changes nothing
    return path


KILLED_CHILD = textwrap.dedent(
    """
    import os, sys
    from ppl.infer import checkpoint
    import ppl
    from ppl.examples import EIGHT_SCHOOLS_SIGMA, EIGHT_SCHOOLS_Y, eight_schools

    save, writes = checkpoint.Checkpoint.save, [0]

    def save_then_die(self, *args):
        save(self, *args)
        writes[0] += 1
        if writes[0] == 6:
            os._exit(17)  # abrupt: no cleanup, no finally blocks, like a kill

    checkpoint.Checkpoint.save = save_then_die
    ppl.infer(eight_schools(EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y), "nuts",
              checkpoint=sys.argv[1], **{settings})
    os._exit(0)
    """
)


def test_killed_run_resumes_with_the_uninterrupted_draws(reference, tmp_path):
    path = tmp_path / "run.ckpt"
    child = KILLED_CHILD.replace("{settings}", repr(SETTINGS))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", child, str(path)], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 17, proc.stderr[-3000:]
    saved = meta(path)
    assert (saved["step"], saved["phase"]) == (6 * CHUNK, "warmup")  # killed mid-warmup
    assert not list(tmp_path.glob("*.tmp*"))  # the write was atomic: no temporary left
    # a save killed before its rename leaves its temporary, removed on resuming (unless
    # its process still runs)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    orphan, live = (tmp_path / f"run.ckpt.tmp{pid}" for pid in (finished.pid, os.getppid()))
    orphan.write_bytes(b"partial")
    live.write_bytes(b"being written")
    resumed = ppl.infer(model(), "nuts", checkpoint=path, **SETTINGS)
    assert_same_posterior(resumed, reference)
    assert meta(path)["step"] == 80
    assert not orphan.exists() and live.exists()


def test_run_interrupted_while_sampling_resumes_exactly(reference, tmp_path, monkeypatch, capsys):
    path = tmp_path / "run.ckpt"
    with monkeypatch.context() as m:
        interrupt_after(m, 15)
        with pytest.raises(Interrupt):
            ppl.infer(model(), "nuts", checkpoint=path, **SETTINGS)
    saved = meta(path)
    assert (saved["step"], saved["phase"]) == (15 * CHUNK, "sample")  # 20 draws kept so far
    capsys.readouterr()
    resumed = ppl.infer(model(), "nuts", checkpoint=path, **{**SETTINGS, "progress": True})
    assert_same_posterior(resumed, reference)
    err = capsys.readouterr().err
    counts = [int(c) for c in re.findall(r"(\d+)/80", err)]
    assert counts[0] == 60 and counts[-1] == 80  # the bar starts at the saved step
    assert "sample (compiling)" in err  # the first chunk's wait is named, not timed


def test_finished_checkpoint_returns_the_same_posterior_without_sampling(reference, finished):
    before = finished.read_bytes()
    saved = meta(finished)
    again = ppl.infer(model(), "nuts", checkpoint=finished, **SETTINGS)
    assert_same_posterior(again, reference)
    assert finished.read_bytes() == before  # nothing ran, so nothing was rewritten
    # no chunk ran: the phase times are those of the run that wrote the file
    assert again.diagnostics["sampling_time"] == saved["timings"]["sample"]
    assert again.diagnostics["warmup_time"] == saved["timings"]["warmup"]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"num_samples": 48}, ["num_samples", "sample=40", "sample=48"]),
        ({"num_warmup": 36}, ["num_warmup", "warmup=40", "warmup=36"]),
        ({"seed": 4}, ["seed"]),
        ({"num_chains": 4}, ["num_chains", "2 in the file, 4 now"]),
        ({"method": ppl.mcmc.NUTS(target_accept=0.9)}, ["method", "target_accept=0.9"]),
    ],
)
def test_mismatched_run_raises_and_keeps_the_file(finished, change, words):
    before = finished.read_bytes()
    settings = {**SETTINGS, **change}
    method = settings.pop("method", "nuts")
    with pytest.raises(CheckpointError) as err:
        ppl.infer(model(), method, checkpoint=finished, **settings)
    message = str(err.value)
    assert str(finished) in message and "different run" in message
    for word in words:
        assert word in message
    assert finished.read_bytes() == before


def test_other_data_raises(finished):
    y = EIGHT_SCHOOLS_Y + 1.0
    with pytest.raises(CheckpointError, match="model data"):
        ppl.infer(eight_schools(EIGHT_SCHOOLS_SIGMA, y=y), "nuts", checkpoint=finished, **SETTINGS)


def test_other_model_code_or_non_array_argument_raises(finished):
    @ppl.model
    def eight_schools(sigma, y=None, scale=5.0):  # the same name and sites, another prior
        mu = ppl.sample("mu", ppl.dist.Normal(0.0, scale))
        tau = ppl.sample("tau", ppl.dist.HalfCauchy(5.0))
        with ppl.plate("school", len(sigma)):
            theta_raw = ppl.sample("theta_raw", ppl.dist.Normal(0.0, 1.0))
            theta = ppl.deterministic("theta", mu + tau * theta_raw)
            ppl.sample("y", ppl.dist.Normal(theta, sigma), obs=y)

    edited = eight_schools(EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)
    with pytest.raises(CheckpointError, match=r"model.code: '\w+' in the file"):
        ppl.infer(edited, "nuts", checkpoint=finished, **SETTINGS)
    with pytest.raises(CheckpointError, match=r"other than arrays: \[\] in the file, \['1.0'\]"):
        rescaled = eight_schools(EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y, scale=1.0)
        ppl.infer(rescaled, "nuts", checkpoint=finished, **SETTINGS)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated: the zip's directory is gone
        lambda b: b[:-200],  # truncated near the end
        lambda b: b"not a checkpoint at all",
        lambda b: b"",
    ],
)
def test_damaged_file_raises(finished, tmp_path, damage):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(damage(finished.read_bytes()))
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="corrupt or truncated") as err:
        ppl.infer(model(), "nuts", checkpoint=path, **SETTINGS)
    assert str(path) in str(err.value)
    assert isinstance(err.value, PPLError)
    assert path.read_bytes() == before


def test_other_npz_file_is_not_taken_for_a_checkpoint(reference, tmp_path):
    path = tmp_path / "posterior.npz"
    reference.save(path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="not a ppl checkpoint"):
        ppl.infer(model(), "nuts", checkpoint=path, **SETTINGS)
    assert path.read_bytes() == before


def test_flipped_byte_in_the_draws_raises(finished, tmp_path):
    """A bit flipped inside the kept draws fails the zip's CRC check."""
    with zipfile.ZipFile(finished) as z:
        info = z.getinfo("kept_0.npy")
    data = bytearray(finished.read_bytes())
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    last = info.header_offset + 30 + name_len + extra_len + info.compress_size - 1
    data[last] ^= 0x01  # the last byte of the array's values
    path = tmp_path / "flipped.ckpt"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt.*CRC"):
        ppl.infer(model(), "nuts", checkpoint=path, **SETTINGS)


@pytest.mark.parametrize("bad", [123, "", ["run.ckpt"]])
def test_checkpoint_option_must_be_a_path(bad):
    with pytest.raises(OptionError, match="checkpoint"):
        ppl.infer(model(), "nuts", checkpoint=bad, **SETTINGS)


def test_checkpoint_option_must_not_be_a_directory(tmp_path):
    with pytest.raises(OptionError, match="directory"):
        ppl.infer(model(), "nuts", checkpoint=tmp_path, **SETTINGS)
    with pytest.raises(OptionError, match="is a directory"):  # one not made yet
        ppl.infer(model(), "nuts", checkpoint=f"{tmp_path}/runs/", **SETTINGS)
