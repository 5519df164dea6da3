-- 0023: the console's language per user (issue #15, D27-E). NULL: not chosen yet (the console
-- then goes by the language cookie, else the browser's Accept-Language).
ALTER TABLE users ADD COLUMN locale text CHECK (locale IN ('kk', 'ru', 'en'));
