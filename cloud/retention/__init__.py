"""Retention of events (issue #18 "Retention", D29-B): whole months older than the policy are
archived to a file (binary COPY, SHA-256, row count, read back), then detached and dropped;
``qadam retention restore YYYY-MM`` loads one back. The derived rows the monthly reports read
(attendance, meal receipts, roll-ups) are separate tables and stay."""
