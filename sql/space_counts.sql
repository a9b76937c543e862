-- Images and vectors per embedding space, with the default marked and each space's HNSW index.
--
--   imgvec psql -f sql/space_counts.sql
\set ON_ERROR_STOP on
SELECT s.space_id, s.name, s.dimension, s.is_default,
       count(e.object_id) AS vectors,
       (SELECT count(*) FROM objects WHERE deleted_at IS NULL) AS listed_images,
       (SELECT string_agg(indexname, ', ') FROM pg_indexes
        WHERE tablename = 'embeddings_space_' || s.space_id AND indexdef LIKE '%hnsw%') AS hnsw_index
FROM embedding_spaces s
LEFT JOIN embeddings e ON e.space_id = s.space_id
GROUP BY s.space_id
ORDER BY s.space_id;
