"""Monthly reports: free and subsidised meals, attendance, the meals-vs-presence cross-check
(docs/reports.md). build.py reads the content, render.py writes CSV/XLSX/PDF, service.py keeps
the stored report rows (draft -> approved) and the scheduler step."""
