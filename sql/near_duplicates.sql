-- Near-duplicate pairs in the default space: images closer than a distance threshold (each pair
-- once). Each image looks up its few nearest neighbours through the HNSW index, so this scales
-- with the number of images, not its square.
--
--   imgvec psql -v max_distance=0.1 -f sql/near_duplicates.sql
--
-- Variables: max_distance  L2 distance under which two images count as duplicates   default 0.1
--            neighbours    neighbours looked at per image                           default 5
-- To see the plan (the HNSW index scan): add -v explain=EXPLAIN
\set ON_ERROR_STOP on
\if :{?max_distance} \else \set max_distance 0.1 \endif
\if :{?neighbours} \else \set neighbours 5 \endif
\if :{?explain} \else \set explain '' \endif
:explain SELECT a.image_id AS image, b.image_id AS duplicate, b.distance, image_score(b.distance) AS score
FROM image_embeddings a
CROSS JOIN LATERAL (
    SELECT n.image_id, n.embedding <-> a.embedding AS distance
    FROM image_embeddings n
    WHERE n.image_id <> a.image_id
    ORDER BY n.embedding <-> a.embedding
    LIMIT :neighbours
) b
WHERE b.distance < :max_distance AND a.image_id < b.image_id
ORDER BY b.distance, a.image_id;
