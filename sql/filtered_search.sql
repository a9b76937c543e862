-- Nearest images to an image among those matching a filter (name prefix, content type, date,
-- attributes).
-- pgvector 0.8's iterative index scan keeps reading the HNSW index until LIMIT rows pass the
-- filter, so a selective filter still returns k rows. A filter left at its default is not
-- applied at all (the planner folds it away), and the ones given are plain column conditions
-- the planner can estimate: it reads the HNSW index unless so few rows match that scanning
-- just those is cheaper (and exact). Which plan when, and strict vs relaxed order measured:
-- sql/README.md.
--
--   imgvec psql -v image=IMG001.jpg -v prefix=2026/ -v since=2026-01-01 -f sql/filtered_search.sql
--   imgvec psql -v image=IMG001.jpg -v attrs='{"class": "cat"}' -f sql/filtered_search.sql
--
-- Variables: image   query image: name or full locator       default IMG001.jpg
--            prefix  keep names starting with this           default '' (all)
--            type    keep this content type, % wildcards     default '' (all)
--            since   keep objects updated on or after        default '' (all)
--            attrs   keep objects whose attributes contain   default '' (all)
--                    this JSON object (GIN index ix_objects_attributes)
--            k       how many                                default 10
-- To see the plan (the HNSW index scan): add -v explain=EXPLAIN
\set ON_ERROR_STOP on
\if :{?image} \else \set image IMG001.jpg \endif
\if :{?prefix} \else \set prefix '' \endif
\if :{?type} \else \set type '' \endif
\if :{?since} \else \set since '' \endif
\if :{?attrs} \else \set attrs '' \endif
\if :{?k} \else \set k 10 \endif
\if :{?explain} \else \set explain '' \endif
-- Iterative scans need pgvector 0.8 in this database; an older one searches without (with a note).
SELECT coalesce((SELECT string_to_array(extversion, '.')::int[] >= '{0,8}' FROM pg_extension
                 WHERE extname = 'vector'), false) AS iterative_scans \gset
\if :iterative_scans
SET hnsw.iterative_scan = relaxed_order;
\else
\warn 'note: this database''s pgvector is older than 0.8 (no iterative index scans): a selective filter may return fewer than k rows. For all k: ALTER EXTENSION vector UPDATE; (its owner or a superuser; pgvector 0.8 on the server), see imgvec db status'
\endif
:explain SELECT * FROM (
    SELECT i.image_id, o.content_type, o.updated_at,
           i.embedding <-> (SELECT image_vector(:'image')) AS distance
    FROM image_embeddings i JOIN objects o ON o.locator = i.content
    WHERE i.content <> (SELECT image_locator(:'image'))
      AND (:'prefix' = '' OR starts_with(o.name, :'prefix'))
      AND (:'type' = '' OR o.content_type LIKE :'type')
      AND (:'since' = '' OR o.updated_at >= nullif(:'since', '')::timestamptz)
      AND (:'attrs' = '' OR o.attributes @> nullif(:'attrs', '')::jsonb)
    ORDER BY distance
    LIMIT :k
) nearest ORDER BY distance;  -- relaxed_order may return rows slightly out of order: re-sort
\if :iterative_scans
RESET hnsw.iterative_scan;
\endif
