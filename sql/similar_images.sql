-- The 5 images nearest to one image, in the default embedding space (the image itself excluded).
-- The classic Vertex AI + pgvector tutorial query, unchanged; it uses the space's HNSW index.
--
--   imgvec psql -v image_id="'IMG001.jpg'" -f sql/similar_images.sql
--
-- Variables: image_id  the image's name as listed (objects.name), quoted as a SQL literal.
SELECT image_id,
       embedding <-> (SELECT embedding FROM image_embeddings WHERE image_id = :image_id) AS distance
FROM image_embeddings
WHERE image_id != :image_id
ORDER BY distance
LIMIT 5;
