-- The images nearest to a saved text query (text-to-image search without Python).
-- Save the text first: `imgvec text-embed "red car"`, or INSERT INTO text_queries (text)
-- VALUES ('red car') and run `imgvec text-embed`.
--
--   imgvec psql -v text='red car' -v k=10 -f sql/text_search.sql
--
-- Variables: text  a text saved in text_queries      default 'red car'
--            k     how many                          default 10
-- To see the plan (the HNSW index scan): add -v explain=EXPLAIN
\set ON_ERROR_STOP on
\if :{?text} \else \set text 'red car' \endif
\if :{?k} \else \set k 10 \endif
\if :{?explain} \else \set explain '' \endif
:explain SELECT image_id, content AS locator,
       embedding <-> (SELECT embedding FROM text_queries WHERE text = :'text') AS distance,
       image_score(embedding <-> (SELECT embedding FROM text_queries WHERE text = :'text')) AS score
FROM image_embeddings
ORDER BY distance
LIMIT :k;
