-- Each cross-check anomaly of a monthly meal report acknowledged one by one, with who and when
-- (the console's Reports page, D28-F). An anomaly is named by what it is about, not by a row of
-- the report, so a regenerated draft keeps the acknowledgements of the anomalies it still holds
-- and shows the new ones as open.
CREATE TABLE report_anomaly_acks (
    school_id        text NOT NULL REFERENCES schools (id),
    month            date NOT NULL CHECK (extract(day FROM month) = 1),
    check_kind       text NOT NULL CHECK (check_kind IN ('fed_not_present', 'present_not_fed')),
    person_id        bigint NOT NULL,
    day              date NOT NULL,
    acknowledged_by  bigint REFERENCES users (id),
    acknowledged_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school_id, month, check_kind, person_id, day)
);
