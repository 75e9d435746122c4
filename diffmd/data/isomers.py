"""C7H10O2 isomers for the simulated C7O2H10 source, and the MD17 start geometries.

The simulated O2O set mirrors the real one (113 PBE trajectories of QM9 C7H10O2 isomers) with
distinct constitutional isomers given as SMILES: rings, ketones, esters, lactones, acids, enols
and alkynes, all with three degrees of unsaturation. Isomer ``k`` (1-based) is named
``xtb{k:02d}``; the list order is part of the data contract, so append, never reorder.

Structures: RDKit embedding (ETKDG, seeded) and an MMFF94 pre-optimisation; the GFN2-xTB
optimisation follows in :mod:`diffmd.data.xtb_md`. The MD17 molecules start instead from a real
MD17 frame in MD17's own atom order (``structures/<molecule>.xyz``), so simulated and downloaded
trajectories share atom order and topology.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import numpy as np

from diffmd.data.xyz import parse_xyz

C7H10O2_SMILES: tuple[str, ...] = (
    "O=C1CCCCC1C=O",  # 2-formylcyclohexanone
    "CC1=CC(=O)CC(O)C1",  # 5-hydroxy-3-methylcyclohex-2-enone
    "OC(=O)C1CCC=CC1",  # cyclohex-3-ene-1-carboxylic acid
    "CCCCC#CC(=O)O",  # hept-2-ynoic acid
    "C=CC(=O)OC/C=C/C",  # (E)-crotyl acrylate
    "CC(=O)CCC(=O)C=C",  # hept-6-ene-2,5-dione
    "O=C1CCC(=O)C(C)C1",  # 2-methylcyclohexane-1,4-dione
    "CC1(C)C(=O)CCC1=O",  # 2,2-dimethylcyclopentane-1,3-dione
    "CC(=O)C1CCCC1=O",  # 2-acetylcyclopentanone
    "COC(=O)C1=CCCC1",  # methyl cyclopent-1-enecarboxylate
    "CCOC(=O)/C=C/C=C",  # ethyl (E)-penta-2,4-dienoate
    "CC(C)=CC(=O)C(C)=O",  # 5-methylhex-4-ene-2,3-dione
    "CC1=CCC(C(=O)O)C1",  # 3-methylcyclopent-3-ene-1-carboxylic acid
    "O=CC1CCC(C=O)C1",  # cyclopentane-1,3-dicarbaldehyde
    "CC(=O)OCCCC#C",  # pent-4-ynyl acetate
    "C=CCOC(=O)CC=C",  # allyl but-3-enoate
    "CCC(=O)/C=C/C(C)=O",  # (E)-hept-3-ene-2,5-dione
    "CC1CC(=O)CC(=O)C1",  # 5-methylcyclohexane-1,3-dione
    "CC1=C(O)C(=O)CCC1",  # 2-hydroxy-3-methylcyclohex-2-enone
    "COC1=CC(=O)CCC1",  # 3-methoxycyclohex-2-enone
    "CC(=O)C1=CCOCC1",  # 4-acetyl-3,6-dihydro-2H-pyran
    "OCC1=CC(=O)CCC1",  # 3-(hydroxymethyl)cyclohex-2-enone
    "O=C1OCC2CCCC12",  # hexahydro-2-benzofuranone-like bicyclic lactone
    "CC1CC(=O)OC1C=C",  # 4-methyl-5-vinyl-butyrolactone
    "CC12CCC(C1)OC2=O",  # bridged bicyclic lactone
)

MD17_MOLECULES = ("aspirin", "benzene", "ethanol", "malonaldehyde", "naphthalene", "salicylic", "toluene", "uracil")


def xtb_isomer_names(n: int, smiles: Sequence[str] | None = None) -> list[str]:
    """``["xtb01", "xtb02", ...]``: the first ``n`` simulated isomers of ``smiles`` (default: the package's)."""
    available = len(smiles or C7H10O2_SMILES)
    if not 1 <= n <= available:
        raise ValueError(f"data.c7o2h10.xtb.n_isomers: {n}, must be between 1 and {available} (isomer SMILES)")
    return [f"xtb{k:02d}" for k in range(1, n + 1)]


def isomer_index(name: str) -> int:
    """``xtb07`` -> 6 (0-based index into the SMILES list)."""
    if not (name.startswith("xtb") and name[3:].isdigit()):
        raise KeyError(f"not a simulated isomer name: {name!r} (expected xtb01, xtb02, ...)")
    return int(name[3:]) - 1


def check_formula(smiles: str) -> None:
    """Raise ValueError unless ``smiles`` parses and is C7H10O2."""
    from rdkit import Chem
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"isomer SMILES {smiles!r} does not parse")
    formula = CalcMolFormula(mol)
    if formula != "C7H10O2":
        raise ValueError(f"isomer SMILES {smiles!r} is {formula}, not C7H10O2")


def embed_smiles(smiles: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(atomic numbers (atoms,), positions (atoms, 3) Å): seeded ETKDG embedding + MMFF94 optimisation."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    check_formula(smiles)
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError(f"RDKit could not embed {smiles!r} (seed {seed})")
    if AllChem.MMFFOptimizeMolecule(mol, maxIters=2000) == -1:
        raise RuntimeError(f"MMFF94 has no parameters for {smiles!r}")
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    return z, np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)


def md17_start_structure(molecule: str) -> tuple[np.ndarray, np.ndarray]:
    """(atomic numbers, positions Å) of the packaged MD17 start frame, in MD17 atom order."""
    if molecule not in MD17_MOLECULES:
        raise KeyError(f"unknown MD17 molecule {molecule!r} (known: {', '.join(MD17_MOLECULES)})")
    res = resources.files("diffmd.data").joinpath("structures", f"{molecule}.xyz")
    frames = parse_xyz(res.read_text(), f"diffmd/data/structures/{molecule}.xyz")
    return frames.atomic_numbers, frames.positions[0]
