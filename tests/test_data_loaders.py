"""Loaders on real MD17 frames, units, velocity definition, and corrupt/truncated inputs."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from diffmd.data.c7o2h10 import convert_folder, read_energy_dat, safe_extract
from diffmd.data.md17 import md17_to_trajectory, read_md17_npz
from diffmd.data.trajectory import TrajectoryFormatError, load_trajectory, save_trajectory
from diffmd.data.xyz import parse_xyz, read_xyz

DATA = Path(__file__).parent / "data"
FIRST3 = DATA / "md17_ethanol_first3.xyz"


def test_md17_first_frames_units_and_velocity():
    frames = read_xyz(FIRST3)
    assert frames.positions.shape == (3, 9, 3)
    assert frames.atomic_numbers.tolist() == [6, 6, 8, 1, 1, 1, 1, 1, 1]
    assert frames.extra is not None and frames.extra.shape == (3, 9, 3)  # forces, kcal/mol/Å
    assert float(frames.comments[0]) == pytest.approx(-97208.406, abs=1e-3)  # kcal/mol
    x = frames.positions
    # Å and 0.5 fs: atoms move about 0.01 Å per frame, bonds stay chemical (C-C about 1.5 Å)
    step = np.linalg.norm(x[1:] - x[:-1], axis=-1)
    assert 1e-3 < step.mean() < 0.05
    assert 1.4 < np.linalg.norm(x[0, 0] - x[0, 1]) < 1.6
    # backward difference: v(t) = x(t) - x(t-1) uses only the past; it differs from the forward one
    v_back = x[1] - x[0]
    v_fwd = x[2] - x[1]
    assert np.abs(v_back - v_fwd).max() > 1e-4
    # a(t-1) = v(t) - v(t-1) = x(t) - 2x(t-1) + x(t-2): second difference, much smaller than v
    a = x[2] - 2 * x[1] + x[0]
    assert np.abs(a).mean() < np.abs(v_back).mean()


def test_md17_npz_conversion_roundtrip(tmp_path):
    x = read_xyz(FIRST3)
    upstream = tmp_path / "md17_ethanol.npz"
    energies = np.array([float(c) for c in x.comments])[:, None]
    np.savez(upstream, R=x.positions, z=x.atomic_numbers, E=energies, F=x.extra, name="ethanol")
    with pytest.raises(TrajectoryFormatError, match="3 frames in 'R', MD17 ethanol has 555092"):
        read_md17_npz(upstream, "ethanol")
    traj = md17_to_trajectory(upstream, "ethanol", "local", {"sha256": "x"}, check_frames=False)
    assert traj.dt_fs == 0.5 and traj.temperature_K == 500.0 and traj.energies.shape == (3,)
    save_trajectory(tmp_path / "ethanol.npz", traj)
    back = load_trajectory(tmp_path / "ethanol.npz")
    np.testing.assert_array_equal(back.positions, x.positions)
    np.testing.assert_array_equal(back.forces, x.extra)
    assert back.provenance["sha256"] == "x" and back.source == "local"


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_md17_npz_names_the_file(tmp_path, damage):
    x = read_xyz(FIRST3)
    path = tmp_path / "md17_ethanol.npz"
    np.savez(path, R=x.positions, z=x.atomic_numbers)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not a zip file at all")
    with pytest.raises(TrajectoryFormatError, match=rf"{path}: corrupt or truncated npz"):
        read_md17_npz(path, "ethanol")


def test_md17_npz_missing_key(tmp_path):
    path = tmp_path / "md17_ethanol.npz"
    np.savez(path, positions=np.zeros((2, 3, 3)))
    with pytest.raises(TrajectoryFormatError, match="missing key\\(s\\) R, z"):
        read_md17_npz(path, "ethanol")


def test_truncated_xyz_names_file_and_frame(tmp_path):
    lines = FIRST3.read_text().splitlines()
    bad = tmp_path / "cut.xyz"
    bad.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(TrajectoryFormatError, match=rf"{bad}: frame 2: truncated .* frame 2 is incomplete"):
        read_xyz(bad)


def test_xyz_bad_number_and_elements(tmp_path):
    text = FIRST3.read_text().replace("-0.5687", "-0.5x87", 1)
    with pytest.raises(TrajectoryFormatError, match="non-numeric"):
        parse_xyz(text, "f.xyz")
    lines = FIRST3.read_text().splitlines()
    lines[13] = lines[13].replace("C", "N", 1)  # frame 1 atom 0 changes element
    with pytest.raises(TrajectoryFormatError, match="frame 1 lists different elements"):
        parse_xyz("\n".join(lines), "f.xyz")


def test_mathematica_exponents_are_read():
    text = "2\ncomment\nH 0.0 0.0 1.5*^-3\nH 0.74 0.0 0.0\n"
    assert parse_xyz(text).positions[0, 0, 2] == pytest.approx(1.5e-3)


def _fake_isomer_xyz(n_frames: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    z = ["C"] * 7 + ["O"] * 2 + ["H"] * 10
    base = rng.normal(scale=1.5, size=(19, 3))
    out = []
    for f in range(n_frames):
        pos = base + 0.01 * f
        out += ["19", f"frame {f}"] + [f"{s} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f}" for s, p in zip(z, pos)]
    return "\n".join(out) + "\n"


def test_c7o2h10_archive_to_isomers(tmp_path):
    archive = tmp_path / "c7o2h10_md.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for file_id, seed in (("1004", 0), ("2134", 1)):
            for name, text in ((f"{file_id}.xyz", _fake_isomer_xyz(6, seed)),
                               (f"{file_id}.energy.dat", "# energy\n" + "\n".join(["-12500.5"] * 6) + "\n")):
                data = text.encode()
                info = tarfile.TarInfo(f"c7o2h10_md/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    folder = safe_extract(archive, tmp_path / "raw")
    files = convert_folder(folder, tmp_path / "out", "download", {"sha256": "abc"})
    assert list(files) == ["iso1004", "iso2134"]
    traj = load_trajectory(files["iso1004"])
    assert traj.positions.shape == (6, 19, 3) and traj.dt_fs == 1.0 and traj.dataset == "c7o2h10"
    assert traj.provenance["member"] == "c7o2h10_md/1004.xyz" and traj.provenance["energy_unit_inferred"] == "eV"
    assert traj.energies[0] == pytest.approx(-12500.5 * 23.060548)


def test_energy_dat_count_mismatch_and_unknown_unit(tmp_path):
    path = tmp_path / "1.energy.dat"
    path.write_text("E\n1.0\n2.0\n")
    with pytest.raises(TrajectoryFormatError, match="2 energies for 3 xyz frames"):
        read_energy_dat(path, 3)
    energies, note = read_energy_dat(path, 2)
    assert energies is None and "not recognised" in json.dumps(note)


def test_corrupt_archive_is_reported(tmp_path):
    archive = tmp_path / "c7o2h10_md.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(TrajectoryFormatError, match=rf"{archive}: corrupt or truncated archive"):
        safe_extract(archive, tmp_path / "raw")
