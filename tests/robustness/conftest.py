"""Fixtures of the bad-input suite: tiny models, the installed scripts, mounted file systems.

The commands run as users run them: the installed ``nnups`` / ``nnip`` scripts in a child
process (or their ``main()`` in this process, which goes through the same ``run_main``),
with ``NNIP_MODELS_DIR`` pointing at a one-layer upscaler or demosaic network (or at no
models at all, for ``--demosaic bilinear``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest

from onnx_builders import conv_net, install


def rgb_tensor(name: str) -> dict:
    """A manifest tensor entry: 3 channels of sRGB-encoded RGB in [0, 1]."""
    return {"name": name, "channels": 3, "layout": "rgb", "range": [0, 1], "transfer": "srgb"}


@pytest.fixture(scope="session")
def upscale_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory with one 2x upscaler: a single 3x3 convolution and a pixel shuffle."""
    directory = tmp_path_factory.mktemp("upscale-models")
    install(
        directory,
        {"upscale-fast": conv_net(3, 3, layers=1, scale=2, seed=3)},
        overrides={"upscale-fast": {"inputs": [rgb_tensor("image")], "outputs": [rgb_tensor("output")]}},
    )
    return directory


@pytest.fixture(scope="session")
def demosaic_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory with one demosaic network (packed Bayer in, RGB out, one conv)."""
    directory = tmp_path_factory.mktemp("demosaic-models")
    packed = {"name": "image", "channels": 4, "layout": "bayer_packed", "transfer": "linear"}
    rgb = {"name": "output", "channels": 3, "layout": "rgb", "transfer": "linear"}
    install(
        directory,
        {"demosaic-tiny": conv_net(4, 3, layers=1, scale=2, seed=5)},
        task="demosaic",
        overrides={"demosaic-tiny": {"inputs": [packed], "outputs": [rgb]}},
    )
    return directory


@pytest.fixture(scope="session")
def no_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("no-models")
    (directory / "manifest.json").write_text('{"format_version": 1, "models": []}')
    return directory


def script(name: str) -> list[str]:
    """argv prefix of the installed console script ``name`` (else ``python -m``)."""
    exe = Path(sys.executable).with_name(name)
    return [str(exe)] if exe.exists() else [sys.executable, "-m", f"{name}.cli"]


@dataclass
class Done:
    """A finished command: exit code and its stderr / stdout as text and as lines."""

    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.err.splitlines()


def run_script(
    name: str, args: Sequence[str | bytes | os.PathLike], *, models: Path, timeout: float = 120
) -> Done:
    """Run the installed script ``name`` with ``args`` (bytes allowed: non-UTF-8 names)."""
    env = {**os.environ, "NNIP_MODELS_DIR": str(models)}
    done = subprocess.run(
        [*script(name), *args], capture_output=True, timeout=timeout, env=env
    )
    decode = lambda data: data.decode("utf-8", "backslashreplace")  # noqa: E731
    return Done(done.returncode, decode(done.stdout), decode(done.stderr))


@pytest.fixture()
def run_main(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Done]:
    """``run_main("nnups", [...], models=DIR)``: the command's ``main()`` in this process.

    Same entry point as the script (``run_main``: exit codes, SIGTERM, quiet libraries),
    without a process start; stdout and stderr are captured at the file-descriptor level,
    so LibRaw's C-level chatter would show too.
    """

    def run(name: str, args: Sequence[str], *, models: Path) -> Done:
        monkeypatch.setenv("NNIP_MODELS_DIR", str(models))
        if name == "nnups":
            from nnups.cli import main
        else:
            from nnip.cli import main
        capfd.readouterr()
        with pytest.raises(SystemExit) as stopped:
            main([str(a) for a in args])
        captured = capfd.readouterr()
        code = stopped.value.code
        return Done(code if isinstance(code, int) else 1, captured.out, captured.err)

    return run


# --------------------------------------------------------------------------- mounts


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``tmpfs(size="1m") -> Path``: a small RAM file system, unmounted after the test.

    Skips (with the reason) where mounting is not permitted: not root, no CAP_SYS_ADMIN.
    """
    mounted: list[Path] = []

    def make(size: str = "1m") -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        done = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point))
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'})")
        mounted.append(point)
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def remount_read_only(point: Path) -> None:
    done = _mount("-o", "remount,ro", str(point))
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only ({done.stderr.strip()})")
