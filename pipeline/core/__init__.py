"""The neutral core: what every stage, backend and source agrees on, with no I/O and no imports
beyond the standard library. The space model (`space`), the keys of objects and of their bytes
(`objects`) and the score shown beside a distance (`score`)."""
