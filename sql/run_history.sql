-- Stage runs, newest first: when, how long, how they ended, their counts and error; for a task of
-- a sharded run, the run's id and the task (I/N).
--
--   imgvec psql -v limit=20 -f sql/run_history.sql
--
-- Variables: limit  how many runs   default 20
\set ON_ERROR_STOP on
\if :{?limit} \else \set limit 20 \endif
SELECT r.run_id, r.stage, r.status, r.started_at,
       r.finished_at - r.started_at AS took,
       s.name AS space, r.source, r.sharded_run, r.shard, r.counts, r.error
FROM runs r LEFT JOIN embedding_spaces s ON s.space_id = r.space_id
ORDER BY r.started_at DESC
LIMIT :limit;
