-- The images nearest to one image, in the default embedding space, the image itself excluded,
-- with the L2 distance and a 0-1 score. It is the classic Vertex AI + pgvector tutorial query
-- (plus the score) and uses the space's HNSW index; image_vector() stands in for its subquery, so
-- that a full locator works too and an unknown name is an error rather than NULL distances.
--
--   imgvec psql -v image=IMG001.jpg -v k=5 -f sql/similar_images.sql
--
-- Variables: image  the image: its name (image_embeddings.image_id)  default IMG001.jpg
--                   or its full locator (any source)
--            k      how many                                        default 5
-- An unknown or ambiguous image stops with an error that says why (image_vector()).
-- The same as a function: SELECT * FROM similar_images('IMG001.jpg', 5);
-- To see the plan (the HNSW index scan): add -v explain=EXPLAIN
\set ON_ERROR_STOP on
\if :{?image} \else \set image IMG001.jpg \endif
\if :{?k} \else \set k 5 \endif
\if :{?explain} \else \set explain '' \endif
:explain SELECT image_id,
       embedding <-> (SELECT image_vector(:'image')) AS distance,
       image_score(embedding <-> (SELECT image_vector(:'image'))) AS score
FROM image_embeddings
WHERE content <> (SELECT image_locator(:'image'))
ORDER BY distance
LIMIT :k;
