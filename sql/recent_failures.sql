-- Images a stage could not process, newest first, with the reason and how often it was tried.
--
--   imgvec psql -v days=7 -f sql/recent_failures.sql
--
-- Variables: days  look back this many days   default 7
\set ON_ERROR_STOP on
\if :{?days} \else \set days 7 \endif
SELECT f.last_failed_at, f.stage, s.name AS space, f.locator, f.reason, f.attempts
FROM failures f LEFT JOIN embedding_spaces s ON s.space_id = f.space_id
WHERE f.last_failed_at >= now() - make_interval(days => :days)
ORDER BY f.last_failed_at DESC, f.locator;
