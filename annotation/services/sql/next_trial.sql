-- trial_next (annotation/services/assignment.py, rules 1, 2, 5 and 11) in one statement
-- for the common case: the session's open trial if it still holds, else (not the
-- session's first trial, no practice or gold due, quota not reached, study live, nothing
-- queued) a claimed counted pair with its new trial. No trial_id comes back when the
-- general path must decide.
--
-- The pair to claim (CTEs level to candidate): the lowest level (n_assigned) first, at a
-- random place within it. Claims walk the claimable pairs' index (pair_claimable_order:
-- only the pairs below their target; the claim's condition matches its predicate).
-- Starting each walk at a random rand_key (rather than at the head) spreads the index
-- entries that claims leave dead over the whole level, so a walk finds a live pair within
-- a few entries instead of stepping over every pair claimed since the last vacuum. "wrap"
-- covers the level from its start (and the levels above) when nothing is free after the
-- random point. Scalar subqueries on "eligible", not joins, keep the index walk ordered
-- and short. SKIP LOCKED: concurrent annotators never wait on each other's pair.
-- Params: NextParams. Row: NextRow.
WITH s AS (
    SELECT s.id, s.study_id, s.completed_at, s.n_issued, s.n_done, s.n_practice_done,
           s.open_trial_id, s.queued_trial_id, s.pilot, st.status, st.practice_trials,
           st.trials_per_session AS quota, st.gold_rate, st.lease_seconds,
           CASE WHEN st.sampling = 'active' THEN 'active'
                WHEN st.stop_when_decided THEN 'early-stop' ELSE 'uniform' END AS policy
    FROM annotation_annotatorsession s JOIN annotation_study st ON st.id = s.study_id
    WHERE s.token = %(token)s::text
), open AS (
    SELECT t.id, t.kind, t.a_on_left, t.lease_expires_at, t.pair_id
    FROM annotation_trial t JOIN s ON t.id = s.open_trial_id
    WHERE t.answered_at IS NULL
      AND (t.kind <> 'label' OR (t.lease_expires_at > %(now)s::timestamptz AND NOT t.released))
), eligible AS (
    SELECT s.* FROM s
    WHERE NOT EXISTS (SELECT 1 FROM open) AND s.queued_trial_id IS NULL
      AND s.completed_at IS NULL AND s.status = 'live' AND NOT s.pilot
      AND s.n_issued >= s.practice_trials AND s.n_issued > 0 AND s.n_done < s.quota
      AND NOT (%(gold_draw)s::float8 < s.gold_rate)
), 
level AS (
    SELECT p.n_assigned FROM annotation_pair p
    WHERE p.study_id = (SELECT study_id FROM eligible)
      AND p.gold_answer = '' AND p.n_assigned < p.target_votes
    ORDER BY p.n_assigned LIMIT 1
), after_point AS (
    SELECT p.id FROM annotation_pair p
    WHERE p.study_id = (SELECT study_id FROM eligible)
      AND p.gold_answer = '' AND p.n_assigned < p.target_votes
      AND p.n_assigned = (SELECT n_assigned FROM level)
      AND p.rand_key >= (SELECT random())
      AND NOT EXISTS (
          SELECT 1 FROM annotation_trial t
          WHERE t.session_id = (SELECT id FROM eligible) AND t.pair_id = p.id
      )
    ORDER BY p.n_assigned, p.rand_key
    LIMIT 1
    FOR UPDATE OF p SKIP LOCKED
), wrap AS (
    SELECT p.id FROM annotation_pair p
    WHERE p.study_id = (SELECT study_id FROM eligible)
      AND p.gold_answer = '' AND p.n_assigned < p.target_votes
      AND NOT EXISTS (SELECT 1 FROM after_point)
      AND NOT EXISTS (
          SELECT 1 FROM annotation_trial t
          WHERE t.session_id = (SELECT id FROM eligible) AND t.pair_id = p.id
      )
    ORDER BY p.n_assigned, p.rand_key
    LIMIT 1
    FOR UPDATE OF p SKIP LOCKED
), candidate AS (
    SELECT id FROM after_point UNION ALL SELECT id FROM wrap
), claimed AS (
    UPDATE annotation_pair p SET n_assigned = p.n_assigned + 1, rand_key = random()
    FROM candidate WHERE p.id = candidate.id
    RETURNING p.id
), trial AS (
    INSERT INTO annotation_trial
        (id, session_id, pair_id, kind, ordinal, a_on_left, issued_at, lease_expires_at,
         released, policy)
    SELECT gen_random_uuid(), e.id, claimed.id, 'label', e.n_issued + 1, random() < 0.5,
           %(now)s::timestamptz, %(now)s::timestamptz + e.lease_seconds * interval '1 second', FALSE,
           e.policy
    FROM claimed, eligible e
    RETURNING id, kind, a_on_left, lease_expires_at, pair_id
), moved AS (
    UPDATE annotation_annotatorsession s
    SET n_issued = s.n_issued + 1, open_trial_id = trial.id
    FROM trial, eligible e WHERE s.id = e.id
)
SELECT s.id AS session_id, s.open_trial_id, s.n_done, s.n_practice_done,
       s.practice_trials, s.quota,
       EXISTS (SELECT 1 FROM eligible) AS claim_tried,
       coalesce(open.id, trial.id) AS trial_id,
       coalesce(open.kind, trial.kind) AS open_kind,
       coalesce(open.a_on_left, trial.a_on_left) AS a_on_left,
       coalesce(open.lease_expires_at, trial.lease_expires_at) AS open_expires,
       a.file AS a_file, a.width AS a_width, a.height AS a_height,
       b.file AS b_file, b.width AS b_width, b.height AS b_height,
       r.file AS r_file, r.width AS r_width, r.height AS r_height,
       a.display_file AS a_display_file, b.display_file AS b_display_file,
       r.display_file AS r_display_file
FROM s
LEFT JOIN open ON TRUE
LEFT JOIN trial ON TRUE
LEFT JOIN annotation_pair p ON p.id = coalesce(open.pair_id, trial.pair_id)
LEFT JOIN annotation_image a ON a.id = p.image_a_id
LEFT JOIN annotation_image b ON b.id = p.image_b_id
LEFT JOIN annotation_image r ON r.id = p.shown_reference_id
