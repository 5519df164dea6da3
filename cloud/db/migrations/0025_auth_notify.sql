-- 0025: the API's token-lookup cache (issue #19, D27-D) learns of every change that would make a
-- kept lookup wrong. After a session is revoked or removed, or a user's role, scope, e-mail or
-- active flag changes (or the user is removed), PostgreSQL sends NOTIFY qadam_auth when the
-- transaction commits: 's:<token hash in hex>' or 'u:<user id>'. Each API process LISTENs and
-- drops what is named (cloud/auth/token_cache.py), whichever process or tool made the change.
CREATE FUNCTION qadam_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'sessions' THEN
        PERFORM pg_notify('qadam_auth', 's:' || encode(OLD.token_hash, 'hex'));
    ELSE
        PERFORM pg_notify('qadam_auth', 'u:' || OLD.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_auth_changed
    AFTER UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION qadam_auth_changed();

CREATE TRIGGER users_auth_changed
    AFTER UPDATE OF email, role, district_id, school_id, active OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION qadam_auth_changed();
