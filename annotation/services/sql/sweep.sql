-- leases_sweep (annotation/services/assignment.py, rule 5): return the pairs of expired,
-- unanswered counted trials to the pool. A concurrent sweep skips rather than queues (the
-- advisory lock); one row: how many leases were released (NULL for none).
-- Params: SweepParams. Row: SweepRow.
WITH expired AS (
    UPDATE annotation_trial SET released = TRUE
    WHERE pg_try_advisory_xact_lock(4242001)
      AND kind = 'label' AND answered_at IS NULL AND NOT released
      AND lease_expires_at < %(now)s::timestamptz
    RETURNING pair_id
), counts AS (
    SELECT pair_id, count(*) AS n FROM expired GROUP BY pair_id
), returned AS (
    UPDATE annotation_pair p SET n_assigned = p.n_assigned - counts.n
    FROM counts WHERE p.id = counts.pair_id
    RETURNING counts.n
)
SELECT sum(n) AS released FROM returned
