-- A data subject's erasure (issue #18 "data-subject export and erase", D28-K): the person's row
-- stays (events, meals and the monthly reports count it) but loses everything that names them.
ALTER TABLE people ADD COLUMN erased_at timestamptz;
ALTER TABLE people ADD CONSTRAINT people_erased_is_anonymous
    CHECK (erased_at IS NULL OR (full_name = '' AND external_id IS NULL AND class_id IS NULL
                                 AND NOT active));
-- the export of a person's data and its erasure are audited under their own names
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN ('create', 'update',
    'delete', 'revoke', 'withdraw', 'link', 'unlink', 'login', 'logout', 'export', 'erase'));
