"""The template library: deduplicated structures and their zone-axis projections in one file.

File format (``.npz``, versioned): a ``header`` (UTF-8 JSON: ``format``, ``version``, ``meta``,
``entries``) and the projections as flat arrays (:mod:`.table`), which load in well under a second.
An entry holds the conventional standard cell (lattice matrix [Å], species, fractional
coordinates), its space group, its number of symmetry-distinct sites (``n_orbits``), provenance,
``is_2d`` (a monolayer, vacuum along c) and ``layered`` (a crystal of sheets in its ab plane, whose
monolayer is also an entry). A projection holds the zone axis, the integer
vectors ``p, q`` of the projected cell, the period ``t_A`` [Å], the ``full`` column pattern in
that cell and the visible patterns: for each set of visible columns (``visible``: indices into
the full pattern; the entry's own species first, then the sets decorated prototypes may show,
last every column, for signals that show light columns),
the ``weighted`` translation cell (columns told apart by composition) and, when larger, the
``geometric`` one (positions alone). Each pattern has ``basis`` (cell vectors, fractional in the
entry's cell), ``cell`` [Å], ``frac``, ``counts`` (atoms per period over the entry's ``elements``)
and ``own`` (its columns are those visible with the entry's own species).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from collections import Counter
from itertools import product
from pathlib import Path
from typing import Optional

import numpy as np

from ..model import AutomatError, Progress, no_progress
from .sources import SYMPREC
from .table import ProjectionTable

FORMAT = "napari-automat-templates"
VERSION = 5
FILENAME = f"templates-v{VERSION}.npz"
#: Projections whose visible cell is longer than this are not resolvable [Å].
MAX_CELL_A = 12.0
#: Projections with visible columns closer than this are not resolvable [Å].
MIN_SEPARATION_A = 0.6
#: Columns fainter than this fraction of the heaviest are invisible in HAADF ...
VISIBLE_FRACTION = 0.1
#: ... and columns at least this bright are always seen; in between (O next to Ti in rutile,
#: 18%) they may be missed, so each projection also stores the pattern without them.
STRONG_FRACTION = 0.4
#: Z-contrast exponent used to decide visibility at build time.
Z_EXPONENT = 1.7
#: Highest |index| of the zone axes.
MAX_INDEX = 2
#: Atomic numbers tried on each species to find the column sets a decorated prototype may show.
SCENARIO_Z = (8, 26, 56, 82)
#: Prototypes with more species than this are never decorated (only their own visibility is stored).
DECORATED_SPECIES = 4
#: Most visible-column sets stored per projection (others are computed when a query needs them).
MAX_SUBSETS = 8


@dataclass
class TemplateLibrary:
    """Template entries and their projections (see the module docstring for the layout)."""

    entries: list[dict]
    projections: ProjectionTable
    meta: dict = field(default_factory=dict)
    path: Optional[str] = None
    cache: dict = field(default_factory=dict, repr=False)

    def structure(self, index: int):
        """The pymatgen Structure (conventional standard cell) of entry ``index``."""
        key = ("structure", index)
        if key not in self.cache:
            from pymatgen.core import Lattice, Structure

            s = self.entries[index]["structure"]
            self.cache[key] = Structure(Lattice(s["lattice"]), s["species"], s["frac"])
        return self.cache[key].copy()

    def __len__(self) -> int:
        return len(self.entries)

    def content_hash(self) -> Optional[str]:
        """SHA-1 (16 hex digits) of the library file, so a result names the library it came from."""
        if "content_hash" not in self.cache:
            digest = None
            if self.path and Path(self.path).is_file():
                h = hashlib.sha1()
                with open(self.path, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                digest = h.hexdigest()[:16]
            self.cache["content_hash"] = digest
        return self.cache["content_hash"]


def default_path() -> Path:
    """The library file: the one built into the user cache (``automat library build``), else the
    one packaged in ``napari_automat/data``, else the cache path (where it will be built)."""
    cached = cache_dir() / FILENAME
    packaged = Path(__file__).resolve().parent.parent / "data" / FILENAME
    return packaged if packaged.exists() and not cached.exists() else cached


def cache_dir() -> Path:
    """The user cache directory (``$AUTOMAT_CACHE_DIR`` overrides it)."""
    if os.environ.get("AUTOMAT_CACHE_DIR"):
        return Path(os.environ["AUTOMAT_CACHE_DIR"])
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("napari-automat"))
    except ImportError:  # pragma: no cover - platformdirs ships with pip-installed environments
        return Path.home() / ".cache" / "napari-automat"


def _compact(structure) -> dict:
    return {"lattice": np.round(structure.lattice.matrix, 6).tolist(),
            "species": [site.specie.symbol for site in structure],
            "frac": np.round(np.mod(structure.frac_coords, 1.0), 6).tolist()}


def _pattern_dict(kind: str, pattern, elements: list[str], visible: list[int], own: bool) -> dict:
    counts = [[round(c.get(el, 0.0), 4) for el in elements] for c in pattern.composition]
    return {"kind": kind, "visible": visible, "own": own, "basis": np.round(pattern.basis_frac3, 6).tolist(),
            "cell": np.round(pattern.cell_A, 5).tolist(), "frac": np.round(pattern.frac, 4).tolist(),
            "counts": counts}


def _resolvable(pattern) -> bool:
    from .projection import periodic_distances

    if max(pattern.a_A, pattern.b_A) > MAX_CELL_A or min(pattern.a_A, pattern.b_A) < MIN_SEPARATION_A:
        return False
    if len(pattern) < 2:
        return True
    d = periodic_distances(pattern.frac, pattern.frac, pattern.cell_A)
    np.fill_diagonal(d, np.inf)
    return bool(d.min() >= MIN_SEPARATION_A)


def visibility_subsets(counts: np.ndarray, own_z: np.ndarray, z_exponent: float = Z_EXPONENT) -> tuple[list, int]:
    """The sets of visible columns (index tuples) and how many of the first are the entry's own:
    for its own species first (all columns above :data:`VISIBLE_FRACTION`, then only those above
    :data:`STRONG_FRACTION`), then the most frequent ones over every assignment of the scenario
    atomic numbers to its species (the columns a decorated prototype may show), at most
    ``MAX_SUBSETS``; and every column, as annular bright field, bright field and iDPC show them
    (O beside Sr in SrTiO3)."""
    counts = np.asarray(counts, float)
    zs = [np.asarray(own_z, float)]
    if counts.shape[1] <= DECORATED_SPECIES:
        zs += [np.array(z, float) for z in product(SCENARIO_Z, repeat=counts.shape[1])]
    weights = np.stack(zs) ** z_exponent @ counts.T
    keys = [[tuple(int(i) for i in np.flatnonzero(w >= f * w.max())) for f in (VISIBLE_FRACTION, STRONG_FRACTION)]
            for w in weights]
    own = list(dict.fromkeys(keys[0]))
    tally = Counter(k for pair in keys[1:] for k in pair)
    rest = [k for k, _ in tally.most_common() if k not in own]
    subsets = (own + rest)[:MAX_SUBSETS]
    every = tuple(range(len(counts)))
    return subsets + ([every] if every not in subsets else []), len(own)


def visible_patterns(full, elements: list[str], subsets: list[tuple], n_own: int) -> list[dict]:
    """Library records of the resolvable visible patterns of one projection (``full``: all its
    columns): per visible set the translation cell by composition and, when larger, by geometry.
    The first ``n_own`` sets are those of the entry's own species."""
    from .projection import subpattern, translation_cell

    out = []
    for k, visible in enumerate(subsets):
        sub = subpattern(full, list(visible))
        vis = translation_cell(sub)
        if _resolvable(vis):
            out.append(_pattern_dict("weighted", vis, elements, list(visible), k < n_own))
        geo = translation_cell(sub, labelled=False)
        if abs(geo.area_A2 - vis.area_A2) > 1e-3 * vis.area_A2 and _resolvable(geo):
            out.append(_pattern_dict("geometric", geo, elements, list(visible), k < n_own))
    return out


def entry_projections(args: tuple) -> list[dict]:
    """The zone-axis projections of one conventional cell, ``args = (structure, elements, is_2d)``,
    that have a resolvable visible pattern, as library records without their ``entry`` index (the
    full column pattern included). A monolayer is only seen along its normal (c, the vacuum axis)."""
    from pymatgen.core import Element

    from .projection import project, symmetry_unique_axes

    structure, elements, is_2d = args
    own_z = np.array([Element(el).Z for el in elements], float)
    out = []
    for axis in [(0, 0, 1)] if is_2d else symmetry_unique_axes(structure, MAX_INDEX, SYMPREC):
        proj = project(structure, axis, Z_EXPONENT)
        counts = np.array([[c.get(el, 0.0) for el in elements] for c in proj.composition])
        patterns = visible_patterns(proj, elements, *visibility_subsets(counts, own_z))
        if not patterns:
            continue
        out.append({"zone_axis": list(axis), "p": proj.p.tolist(), "q": proj.q.tolist(),
                    "t_A": round(proj.t_A, 5), "full": {"basis": proj.basis_frac3.tolist(),
                                                        "cell": np.round(proj.cell_A, 5).tolist(),
                                                        "frac": np.round(proj.frac, 4).tolist(),
                                                        "counts": np.round(counts, 4).tolist()},
                    "patterns": patterns})
    return out


def _conventional(structure) -> tuple:
    """``(conventional standard cell, space-group number, symbol, crystal system, number of
    symmetry-distinct sites)``."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    os.environ.setdefault("SPGLIB_WARNING", "OFF")  # its C warnings on odd mined cells are noise here
    sga = SpacegroupAnalyzer(structure, symprec=SYMPREC)
    return (sga.get_conventional_standard_structure(), sga.get_space_group_number(),
            sga.get_space_group_symbol(), sga.get_crystal_system(),
            len(sga.get_symmetrized_structure().equivalent_sites))


def _fingerprint(compact: dict, is_2d: bool) -> str:
    """Identity of an entry's projections: its cell, the 2D flag and the build parameters."""
    key = json.dumps([compact, is_2d, _build_parameters()], sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _build_parameters() -> dict:
    return {"z_exponent": Z_EXPONENT, "visible_fraction": VISIBLE_FRACTION, "strong_fraction": STRONG_FRACTION,
            "max_index": MAX_INDEX, "max_cell_A": MAX_CELL_A, "min_separation_A": MIN_SEPARATION_A,
            "max_subsets": MAX_SUBSETS, "scenario_z": list(SCENARIO_Z), "light_patterns": True}


def _deduplicate(sources: list, progress: Progress, pool, entries: Optional[list[dict]] = None,
                 span: tuple[float, float] = (0.05, 0.25)) -> list[dict]:
    """Conventional standard cells of the sources appended to ``entries``, one per structure
    (StructureMatcher within groups of equal reduced formula and space group); later duplicates
    add provenance only. ``span``: the progress fraction to start at and the one to take."""
    from pymatgen.core.structure_matcher import StructureMatcher

    matcher = StructureMatcher()
    entries = [] if entries is None else entries
    groups: dict[tuple, list[dict]] = {}
    for e in entries:
        groups.setdefault((e["reduced_formula"], e["spacegroup_number"]), []).append(e)
    symmetry = pool.map(_conventional, [src.structure for src in sources], chunksize=8)
    for i, (src, (conv, number, symbol, system, n_orbits)) in enumerate(zip(sources, symmetry)):
        progress(span[0] + span[1] * i / len(sources), f"symmetry of {src.id}")
        key = (conv.composition.reduced_formula, number)
        provenance = {"id": src.id, "source": src.source, "description": src.description}
        twin = next((e for e in groups.get(key, []) if matcher.fit(e["_structure"], conv)), None)
        if twin is not None:
            twin["sources"].append(provenance)
            twin["decorate"] = twin["decorate"] or src.decorate
            continue
        compact = _compact(conv)
        entry = {"id": src.id, "formula": conv.composition.formula.replace(" ", ""),
                 "reduced_formula": key[0],
                 "elements": [el.symbol for el in sorted(conv.composition.elements, key=lambda el: el.X)],
                 "spacegroup_number": number, "spacegroup_symbol": symbol,
                 "crystal_system": system, "n_orbits": n_orbits, "is_2d": src.is_2d, "decorate": src.decorate,
                 "sources": [provenance], "structure": compact,
                 "fingerprint": _fingerprint(compact, src.is_2d), "_structure": conv}
        groups.setdefault(key, []).append(entry)
        entries.append(entry)
    return entries


def _add_monolayers(entries: list[dict], progress: Progress, pool) -> None:
    """Append the monolayers exfoliated from the layered bulk entries (deduplicated like the rest)
    and mark those entries ``layered``: their plan view cannot tell one layer from the stack."""
    from .exfoliate import exfoliated_source

    progress(0.25, "finding layered crystals")
    bulk = [e for e in entries if not e["is_2d"]]
    layers = list(pool.map(exfoliated_source, [(e["id"], e["_structure"], e["decorate"]) for e in bulk], chunksize=16))
    for e, layer in zip(bulk, layers):
        if layer is not None:
            e["layered"] = True
    _deduplicate([layer for layer in layers if layer is not None], progress, pool, entries, span=(0.27, 0.03))


def _previous_projections(path: Path) -> dict[str, list[dict]]:
    """Projections of an existing library file at ``path`` by entry fingerprint (empty when the
    file is absent, of another version or unreadable)."""
    try:
        old = load_library(path)
    except (AutomatError, OSError, ValueError, KeyError):
        return {}
    by_entry: dict[int, list[dict]] = {}
    for pr in old.projections:
        by_entry.setdefault(pr["entry"], []).append(pr)
    return {e["fingerprint"]: by_entry.get(i, []) for i, e in enumerate(old.entries) if "fingerprint" in e}


def build_library(path=None, progress: Progress = no_progress, sources=None, workers: Optional[int] = None,
                  incremental: bool = True) -> TemplateLibrary:
    """Build the library and save it to ``path`` (default: the user cache file). ``sources`` is a
    list of :class:`~.sources.TemplateSource` (default: all offline sources). ``workers``
    processes share the work (default: all cores); with ``incremental``, entries whose cell and
    build parameters are unchanged keep the projections of the file already at ``path``."""
    from concurrent.futures import ProcessPoolExecutor

    from . import sources as src_mod

    start = time.perf_counter()
    target = Path(path) if path is not None else cache_dir() / FILENAME
    progress(0.0, "collecting template structures")
    sources = src_mod.all_sources() if sources is None else list(sources)
    previous = _previous_projections(target) if incremental and target.exists() else {}
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        entries = _deduplicate(sources, progress, pool, span=(0.05, 0.2))
        _add_monolayers(entries, progress, pool)
        todo = [i for i, e in enumerate(entries) if e["fingerprint"] not in previous]
        fresh = pool.map(entry_projections, [(entries[i]["_structure"], entries[i]["elements"], entries[i]["is_2d"])
                                          for i in todo], chunksize=4)
        computed = {}
        for n, (i, prs) in enumerate(zip(todo, fresh)):
            progress(0.3 + 0.7 * n / max(1, len(todo)), f"projecting {entries[i]['reduced_formula']} ({entries[i]['id']})")
            computed[i] = prs
    records: list[dict] = []
    for i, entry in enumerate(entries):
        entry.pop("_structure")
        records += [{**pr, "entry": i} for pr in computed.get(i, previous.get(entry["fingerprint"], []))]
    projections = ProjectionTable.from_records(records, [len(e["elements"]) for e in entries])
    import pymatgen.core

    meta = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "build_s": round(time.perf_counter() - start, 1),
            "pymatgen": pymatgen.core.__version__, **_build_parameters(),
            "reused_entries": len(entries) - len(todo),
            "sources": sorted({src.source for src in sources})}
    library = TemplateLibrary(entries, projections, meta)
    save_library(library, target)
    progress(1.0, f"template library: {len(entries)} structures, {len(projections)} projections "
                  f"({len(entries) - len(todo)} reused)")
    return library


def save_library(library: TemplateLibrary, path) -> Path:
    """Write the library atomically as a versioned ``.npz``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"format": FORMAT, "version": VERSION, "meta": library.meta, "entries": library.entries},
                        separators=(",", ":")).encode()
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, header=np.frombuffer(header, np.uint8), **library.projections.arrays())
    os.replace(tmp, path)
    library.path = str(path)
    return path


_LOADED: dict[tuple, TemplateLibrary] = {}


def load_library(path=None, progress: Progress = no_progress) -> TemplateLibrary:
    """The library at ``path`` (default: packaged file, else the user cache, built there on first
    use). Loaded libraries are kept in memory per file."""
    target = Path(path) if path is not None else default_path()
    if not target.exists():
        if path is not None:
            raise AutomatError(f"template library not found: {target}")
        return build_library(target, progress)
    key = (str(target.resolve()), target.stat().st_mtime_ns)
    if key not in _LOADED:
        progress(0.0, f"loading template library {target.name}")
        try:
            with np.load(target, allow_pickle=False) as npz:
                header = json.loads(bytes(npz["header"]).decode())
                arrays = {name: npz[name] for name in npz.files if name != "header"}
        except (OSError, ValueError, KeyError) as exc:
            raise AutomatError(f"{target} is not a napari-automat template library ({exc})") from None
        if header.get("format") != FORMAT:
            raise AutomatError(f"{target} is not a napari-automat template library")
        if header.get("version") != VERSION:
            raise AutomatError(f"template library {target} has version {header.get('version')}, "
                               f"expected {VERSION}: rebuild it with `automat library build`")
        entries = header["entries"]
        table = ProjectionTable(arrays, [len(e["elements"]) for e in entries])
        _LOADED[key] = TemplateLibrary(entries, table, header.get("meta", {}), str(target))
        progress(1.0, "template library loaded")
    return _LOADED[key]


def library_info(library: TemplateLibrary) -> dict:
    """Summary figures: counts of structures, projections and patterns, sources, file size."""
    size = Path(library.path).stat().st_size if library.path and Path(library.path).exists() else None
    return {
        "path": library.path,
        "version": VERSION,
        "size_MB": round(size / 1e6, 2) if size else None,
        "structures": len(library.entries),
        "projections": len(library.projections),
        "patterns": library.projections.n_patterns,
        "elements": len({el for e in library.entries for el in e["elements"]}),
        "sources": dict(Counter(s["source"] for e in library.entries for s in e["sources"])),
        "crystal_systems": dict(Counter(e["crystal_system"] for e in library.entries)),
        "created": library.meta.get("created"),
        "build_s": library.meta.get("build_s"),
        "reused_entries": library.meta.get("reused_entries"),
    }
