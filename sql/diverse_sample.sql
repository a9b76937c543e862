-- A diverse sample of the default space: images are bucketed by the signs of a few vector
-- components (random-hyperplane hashing: near images share a bucket), and one image is drawn per
-- bucket, so the sample spreads over the collection instead of repeating its biggest cluster.
--
--   imgvec psql -v n=20 -f sql/diverse_sample.sql
--
-- Variables: n     sample size                                   default 20
--            bits  components used for buckets (2^bits buckets)  default 8
\set ON_ERROR_STOP on
\if :{?n} \else \set n 20 \endif
\if :{?bits} \else \set bits 8 \endif
WITH bucketed AS (
    SELECT image_id,
           (SELECT string_agg(CASE WHEN x > 0 THEN '1' ELSE '0' END, '' ORDER BY i)
            FROM unnest((embedding::real[])[1:(:bits)]) WITH ORDINALITY AS t(x, i)) AS bucket
    FROM image_embeddings
)
SELECT image_id, bucket
FROM (SELECT DISTINCT ON (bucket) image_id, bucket FROM bucketed ORDER BY bucket, random()) one_per_bucket
ORDER BY random()
LIMIT :n;
