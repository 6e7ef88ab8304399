"""The library's projections as flat arrays, so that tens of thousands load in a fraction of a second.

A projection record (what :func:`.library.entry_projections` makes and ``table[i]`` gives back) is
``{"entry", "zone_axis", "p", "q", "t_A", "full", "patterns"}``; ``full`` and each pattern hold
``basis`` (2, 3), ``cell`` (2, 2) [Å], ``frac`` (k, 2) and ``counts`` (k, n_elements of the entry);
a pattern also has ``kind`` (``weighted`` or ``geometric``), ``visible`` (indices into ``full``)
and ``own`` (it shows the columns visible with the entry's own species).

The table stores them column-wise: one row per projection (``proj_*``), one per pattern (``pat_*``,
grouped by projection), and the columns of every full pattern and pattern concatenated, found
through start offsets. Counts are padded to the most elements of any entry. Numbers are stored
as float32 (the records are rounded to 4–6 decimals anyway) and read back as float64.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

KINDS = ("weighted", "geometric")
#: Array names of a table, as stored in the library file.
FIELDS = ("proj_entry", "proj_axis", "proj_p", "proj_q", "proj_t", "full_basis", "full_cell", "full_start",
          "full_frac", "full_counts", "pat_proj", "pat_kind", "pat_own", "pat_basis", "pat_cell", "pat_start",
          "pat_frac", "pat_counts", "vis_start", "vis_index", "proj_pat_start")


class ProjectionTable:
    """Projections of a library as arrays; ``table[i]`` is the record of projection ``i``."""

    def __init__(self, arrays: dict, n_elements: np.ndarray):
        missing = [f for f in FIELDS if f not in arrays]
        if missing:
            raise ValueError(f"projection table lacks {missing}")
        for name in FIELDS:
            setattr(self, name, np.asarray(arrays[name]))
        self.n_elements = np.asarray(n_elements, int)  # per entry

    @classmethod
    def from_records(cls, records: list[dict], n_elements) -> "ProjectionTable":
        """A table of projection records (their ``entry`` indexes ``n_elements``)."""
        n_elements = np.asarray(n_elements, int)
        width = int(n_elements.max()) if len(n_elements) else 1
        pats = [(i, pat) for i, pr in enumerate(records) for pat in pr["patterns"]]

        def starts(lengths):
            return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)

        def padded(blocks):
            out = np.zeros((sum(len(b["frac"]) for b in blocks), width), np.float32)
            k = 0
            for b in blocks:
                c = np.asarray(b["counts"], float).reshape(len(b["frac"]), -1)
                out[k:k + len(c), :c.shape[1]] = c
                k += len(c)
            return out

        def frac(blocks):
            parts = [np.asarray(b["frac"], float).reshape(-1, 2) for b in blocks]
            return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 2), np.float32)

        fulls = [pr["full"] for pr in records]
        patterns = [pat for _, pat in pats]
        arrays = {
            "proj_entry": np.array([pr["entry"] for pr in records], np.int32),
            "proj_axis": np.array([pr["zone_axis"] for pr in records], np.int16).reshape(-1, 3),
            "proj_p": np.array([pr["p"] for pr in records], np.int16).reshape(-1, 3),
            "proj_q": np.array([pr["q"] for pr in records], np.int16).reshape(-1, 3),
            "proj_t": np.array([pr["t_A"] for pr in records], float),
            "full_basis": np.array([f["basis"] for f in fulls], np.float32).reshape(-1, 2, 3),
            "full_cell": np.array([f["cell"] for f in fulls], np.float32).reshape(-1, 2, 2),
            "full_start": starts([len(f["frac"]) for f in fulls]),
            "full_frac": frac(fulls), "full_counts": padded(fulls),
            "pat_proj": np.array([i for i, _ in pats], np.int32),
            "pat_kind": np.array([KINDS.index(p["kind"]) for p in patterns], np.int8),
            "pat_own": np.array([bool(p.get("own")) for p in patterns], bool),
            "pat_basis": np.array([p["basis"] for p in patterns], np.float32).reshape(-1, 2, 3),
            "pat_cell": np.array([p["cell"] for p in patterns], np.float32).reshape(-1, 2, 2),
            "pat_start": starts([len(p["frac"]) for p in patterns]),
            "pat_frac": frac(patterns), "pat_counts": padded(patterns),
            "vis_start": starts([len(p["visible"]) for p in patterns]),
            "vis_index": np.array([v for p in patterns for v in p["visible"]], np.int16),
            "proj_pat_start": starts([len(pr["patterns"]) for pr in records]),
        }
        return cls(arrays, n_elements)

    def arrays(self) -> dict:
        return {name: getattr(self, name) for name in FIELDS}

    def __len__(self) -> int:
        return len(self.proj_entry)

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))

    @property
    def n_patterns(self) -> int:
        return len(self.pat_proj)

    def pattern_rows(self, pi: int) -> range:
        """Pattern rows of projection ``pi``."""
        return range(int(self.proj_pat_start[pi]), int(self.proj_pat_start[pi + 1]))

    def full_counts_of(self, pi: int) -> np.ndarray:
        """Atoms per period of each column of projection ``pi``'s full pattern, (k, n_elements)."""
        n = self.n_elements[self.proj_entry[pi]]
        return self.full_counts[self.full_start[pi]:self.full_start[pi + 1], :n].astype(float)

    def pattern_frac(self, r: int) -> np.ndarray:
        return self.pat_frac[self.pat_start[r]:self.pat_start[r + 1]].astype(float)

    def pattern_counts(self, r: int) -> np.ndarray:
        n = self.n_elements[self.proj_entry[self.pat_proj[r]]]
        return self.pat_counts[self.pat_start[r]:self.pat_start[r + 1], :n].astype(float)

    def visible(self, r: int) -> tuple:
        return tuple(int(v) for v in self.vis_index[self.vis_start[r]:self.vis_start[r + 1]])

    def pattern(self, r: int) -> dict:
        """The record of pattern row ``r``."""
        return {"kind": KINDS[self.pat_kind[r]], "visible": list(self.visible(r)), "own": bool(self.pat_own[r]),
                "basis": self.pat_basis[r].tolist(), "cell": self.pat_cell[r].tolist(),
                "frac": self.pattern_frac(r).tolist(), "counts": self.pattern_counts(r).tolist()}

    def __getitem__(self, pi: int) -> dict:
        if not -len(self) <= pi < len(self):
            raise IndexError(pi)
        pi = pi % len(self)
        return {"entry": int(self.proj_entry[pi]), "zone_axis": self.proj_axis[pi].tolist(),
                "p": self.proj_p[pi].tolist(), "q": self.proj_q[pi].tolist(), "t_A": float(self.proj_t[pi]),
                "full": {"basis": self.full_basis[pi].tolist(), "cell": self.full_cell[pi].tolist(),
                         "frac": self.full_frac[self.full_start[pi]:self.full_start[pi + 1]].astype(float).tolist(),
                         "counts": self.full_counts_of(pi).tolist()},
                "patterns": [self.pattern(r) for r in self.pattern_rows(pi)]}
