-- The images nearest to one image, in the default embedding space, the image itself excluded,
-- with the L2 distance and a 0-1 score. It is the classic Vertex AI + pgvector tutorial query
-- (plus the score) and uses the space's HNSW index.
--
--   imgvec psql -v image=IMG001.jpg -v k=5 -f sql/similar_images.sql
--
-- Variables: image  the image's name as listed (objects.name)      default IMG001.jpg
--            k      how many                                      default 5
-- The same as a function: SELECT * FROM similar_images('IMG001.jpg', 5);
-- To see the plan (the HNSW index scan): add -v explain=EXPLAIN
\if :{?image} \else \set image IMG001.jpg \endif
\if :{?k} \else \set k 5 \endif
\if :{?explain} \else \set explain '' \endif
:explain SELECT image_id,
       embedding <-> (SELECT embedding FROM image_embeddings WHERE image_id = :'image') AS distance,
       image_score(embedding <-> (SELECT embedding FROM image_embeddings WHERE image_id = :'image')) AS score
FROM image_embeddings
WHERE image_id != :'image'
ORDER BY distance
LIMIT :k;
