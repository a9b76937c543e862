-- Nearest images to an image among those matching a filter (name prefix, content type, date).
-- pgvector 0.8's iterative index scan keeps reading the HNSW index until LIMIT rows pass the
-- filter, so a selective filter still returns k rows.
--
--   imgvec psql -v image=IMG001.jpg -v prefix=2026/ -v since=2026-01-01 -f sql/filtered_search.sql
--
-- Variables: image   query image name                        default IMG001.jpg
--            prefix  keep names starting with this           default '' (all)
--            type    keep this content type, % wildcards     default image/%
--            since   keep objects updated on or after        default 1970-01-01
--            k       how many                                default 10
\if :{?image} \else \set image IMG001.jpg \endif
\if :{?prefix} \else \set prefix '' \endif
\if :{?type} \else \set type image/% \endif
\if :{?since} \else \set since 1970-01-01 \endif
\if :{?k} \else \set k 10 \endif
SET hnsw.iterative_scan = relaxed_order;
SELECT * FROM (
    SELECT i.image_id, o.content_type, o.updated_at,
           i.embedding <-> (SELECT embedding FROM image_embeddings WHERE image_id = :'image') AS distance
    FROM image_embeddings i JOIN objects o ON o.locator = i.content
    WHERE i.image_id != :'image'
      AND starts_with(i.image_id, :'prefix')
      AND coalesce(o.content_type, '') LIKE :'type'
      AND coalesce(o.updated_at, 'infinity') >= :'since'::timestamptz
    ORDER BY distance
    LIMIT :k
) nearest ORDER BY distance;  -- relaxed_order may return rows slightly out of order: re-sort
RESET hnsw.iterative_scan;
