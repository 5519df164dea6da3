"""Bulk import of students, staff and guardians from the CSV/XLSX files school IT keeps
(docs/import.md): read the file, validate every row against the school's data, then either
report (dry run) or apply everything in the caller's transaction."""
