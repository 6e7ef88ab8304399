"""Where template structures come from, all offline: pymatgen's AFLOW prototype library and its
bundled example structures, ASE elemental ground states, a few common 2D monolayers, and, when
those packages are installed, jarvis-tools' mineral prototypes and crystal-toolkit's
matbench_dielectric Materials Project structures (data files read directly, packages not imported).

Each source yields :class:`TemplateSource` records with provenance; the library deduplicates them
and adds the monolayers of the layered ones (:mod:`.exfoliate`).
Prototype sources may be decorated with other elements at retrieval; Materials Project compounds
(``decorate=False``) stand for themselves only.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

#: Symmetry tolerance for space groups, conventional cells and point-group equivalence of zone
#: axes [Å] (the library, its monolayers and the benchmark's truths use this one).
SYMPREC = 0.1
#: Elemental reference states that ase.build.bulk builds without extra parameters.
BULK_KINDS = ("fcc", "bcc", "hcp", "diamond", "sc")
#: Vacuum added on each side of a monolayer [Å] (≈15 Å in all).
MONOLAYER_VACUUM_A = 7.5
#: Bundled example structures larger than this are skipped (too big to be resolvable).
MAX_SITES = 64
#: Bundled examples that are not bulk crystals.
SKIP_EXAMPLES = ("Si_SiO2_Interface", "He_BCC")
#: Mined structures (jarvis minerals, Materials Project) are kept up to this many sites per
#: (primitive) cell and this many elements: larger cells rarely give a resolvable projection.
MAX_MINED_SITES = 12
MAX_MINED_SPECIES = 4


@dataclass
class TemplateSource:
    """One candidate structure: ``id`` (``source:name``), the pymatgen Structure, provenance."""

    id: str
    structure: Any
    source: str
    description: str
    is_2d: bool = False
    decorate: bool = True


def _package_dir(module: str) -> Path:
    """Directory of an installed (sub)package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{module} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def _optional_data(package: str, relative: str) -> Optional[Path]:
    """A data file inside an optional top-level package, or None when the package is absent."""
    if importlib.util.find_spec(package) is None:
        return None
    path = _package_dir(package) / relative
    return path if path.exists() else None


def _small(n_sites: int, elements) -> bool:
    return n_sites <= MAX_MINED_SITES and len(set(elements)) <= MAX_MINED_SPECIES


def aflow_prototypes() -> Iterator[TemplateSource]:
    """The 288 AFLOW prototypes shipped with pymatgen (real elements, experimental cells)."""
    from pymatgen.core import Structure

    path = _package_dir("pymatgen.analysis.prototypes") / "aflow_prototypes.json.gz"
    with gzip.open(path, "rt") as fh:
        rows = json.load(fh)
    for row in rows:
        tags = row.get("tags", {})
        label = tags.get("aflow", "")
        extra = ", ".join(str(tags[k]) for k in ("strukturbericht", "mineral") if tags.get(k) not in ("", "None", None))
        yield TemplateSource(f"aflow:{label}", Structure.from_dict(row["snl"]), "aflow",
                             f"AFLOW prototype {label}" + (f" ({extra})" if extra else "") + " via pymatgen")


def pymatgen_examples() -> Iterator[TemplateSource]:
    """Ordered example structures bundled with pymatgen (pymatgen/util/structures)."""
    from pymatgen.core import Structure

    folder = _package_dir("pymatgen.util") / "structures"
    for path in sorted(folder.glob("*.json")):
        with open(path) as fh:
            structure = Structure.from_dict(json.load(fh))
        if structure.is_ordered and len(structure) <= MAX_SITES and path.stem not in SKIP_EXAMPLES:
            yield TemplateSource(f"pymatgen:{path.stem}", structure, "pymatgen",
                                 f"pymatgen bundled example structure {path.name}")


def elemental_ground_states() -> Iterator[TemplateSource]:
    """Elements in their ASE reference crystal structure (fcc, bcc, hcp, diamond, sc); no noble gases."""
    from ase.build import bulk
    from ase.data import chemical_symbols, reference_states
    from pymatgen.core import Element
    from pymatgen.io.ase import AseAtomsAdaptor

    for z, state in enumerate(reference_states):
        if not state or state.get("symmetry") not in BULK_KINDS or "basis" in state:  # Se, Te: chains
            continue
        symbol = chemical_symbols[z]
        if Element(symbol).is_noble_gas:
            continue
        kind = state["symmetry"]
        yield TemplateSource(f"ase:{symbol}-{kind}", AseAtomsAdaptor.get_structure(bulk(symbol)), "ase",
                             f"{symbol} {kind} ground state from ase.data.reference_states")


#: (formula, builder, keyword arguments) of the monolayers; lattice constants in Å.
MONOLAYERS = (
    ("MoS2", "mx2", {"kind": "2H", "a": 3.16, "thickness": 3.17}),
    ("WS2", "mx2", {"kind": "2H", "a": 3.15, "thickness": 3.14}),
    ("MoSe2", "mx2", {"kind": "2H", "a": 3.29, "thickness": 3.34}),
    ("WSe2", "mx2", {"kind": "2H", "a": 3.28, "thickness": 3.36}),
    ("C2", "graphene", {"a": 2.46}),
    ("BN", "graphene", {"a": 2.50}),
)


def monolayers() -> Iterator[TemplateSource]:
    """Common 2D monolayers (2H transition-metal dichalcogenides, graphene, hBN) with ~15 Å vacuum."""
    import ase.build
    from pymatgen.io.ase import AseAtomsAdaptor

    for formula, builder, kwargs in MONOLAYERS:
        atoms = getattr(ase.build, builder)(formula=formula, vacuum=MONOLAYER_VACUUM_A, **kwargs)
        atoms.pbc = True
        name = "graphene" if formula == "C2" else ("hBN" if formula == "BN" else f"{formula}-{kwargs['kind']}")
        yield TemplateSource(f"2d:{name}", AseAtomsAdaptor.get_structure(atoms), "2d",
                             f"{name} monolayer built with ase.build.{builder}, {2 * MONOLAYER_VACUUM_A:.0f} Å vacuum",
                             is_2d=True)


JARVIS_MINERALS = "core/mineral_name_prototype.json.zip"


def jarvis_minerals() -> Iterator[TemplateSource]:
    """jarvis-tools' mineral prototypes (1,081 JARVIS-DFT structures named after minerals), those
    with at most :data:`MAX_MINED_SITES` sites and :data:`MAX_MINED_SPECIES` elements."""
    from pymatgen.core import Lattice, Structure

    path = _optional_data("jarvis", JARVIS_MINERALS)
    if path is None:
        return
    with zipfile.ZipFile(path) as zf:
        rows = json.loads(zf.read(zf.namelist()[0]))
    for label, minerals in sorted(rows.items()):
        for name, _descriptor, jid, atoms in minerals:
            if not _small(len(atoms["elements"]), atoms["elements"]):
                continue
            structure = Structure(Lattice(atoms["lattice_mat"]), atoms["elements"], atoms["coords"],
                                  coords_are_cartesian=bool(atoms.get("cartesian")))
            yield TemplateSource(f"jarvis:{name}-{jid}", structure, "jarvis",
                                 f"JARVIS mineral prototype {label} ({name}, {jid}) via jarvis-tools")


MATBENCH_DIELECTRIC = "apps/examples/matbench_dielectric.json.gz"


def matbench_dielectric() -> Iterator[TemplateSource]:
    """Materials Project structures of crystal-toolkit's matbench_dielectric example (4,764), those
    with at most :data:`MAX_MINED_SITES` sites and :data:`MAX_MINED_SPECIES` elements. Real
    compounds, not prototypes: they are never decorated."""
    from pymatgen.core import Structure

    path = _optional_data("crystal_toolkit", MATBENCH_DIELECTRIC)
    if path is None:
        return
    with gzip.open(path, "rt") as fh:
        table = json.load(fh)
    for key in sorted(table["structure"], key=int):
        sites = table["structure"][key]["sites"]
        if not _small(len(sites), [sp["element"] for site in sites for sp in site["species"]]):
            continue
        structure = Structure.from_dict(table["structure"][key])
        if not structure.is_ordered:
            continue
        formula = structure.composition.reduced_formula
        yield TemplateSource(f"matbench:{key}-{formula}", structure, "matbench",
                             f"Materials Project {formula} ({table['spg_symbol'][key]}), row {key} of "
                             "crystal-toolkit's matbench_dielectric example", decorate=False)


#: All sources in priority order (the first of duplicates keeps its id).
SOURCES = (elemental_ground_states, monolayers, pymatgen_examples, aflow_prototypes, jarvis_minerals,
           matbench_dielectric)


def all_sources() -> list[TemplateSource]:
    """Every template structure from every source, duplicates included."""
    return [s for source in SOURCES for s in source()]
