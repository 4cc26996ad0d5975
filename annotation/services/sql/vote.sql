-- vote_submit (annotation/services/votes.py; rules 6 to 10 and 14 in assignment.py): mark
-- the trial answered (only if it is this session's and unanswered), insert the vote with
-- the sides undone and the server's issued-to-answered time, give a released lease's pair
-- its count back (or, for an answer sooner than the study's min_response_ms, the live
-- lease's count: it counts for nothing), and move the session on (the queued trial becomes
-- the open one; a counted answer in time is a sign of a person). A pilot session's
-- trials (a researcher's preview) are issued released, holding no lease: its answer
-- changes no pair's count, though it moves the session on like any answer. In a study that
-- stops when decided, a counted vote that decides its pair's majority label (rule 15) sets
-- the pair's target to its counted votes. No row comes back for a
-- retry, a conflict or a foreign trial. One statement: atomic on its own, so no BEGIN /
-- COMMIT round trips, and row locks are held for this statement only.
-- Params: VoteParams. Row: VoteRow.
WITH answered AS (
    UPDATE annotation_trial t SET answered_at = %(now)s::timestamptz
    FROM annotation_annotatorsession s, annotation_study st, annotation_pair pr
    WHERE t.id = %(trial_id)s::uuid AND t.session_id = s.id AND s.token = %(token)s::text
      AND st.id = s.study_id AND pr.id = t.pair_id AND t.answered_at IS NULL
    RETURNING t.id, t.session_id, t.pair_id, t.kind, t.a_on_left, t.released, s.pilot,
              st.stop_when_decided, st.sampling, st.sampling_every, pr.scene_id,
              t.lease_expires_at < %(now)s::timestamptz AS late,
              LEAST(GREATEST(floor(extract(epoch FROM %(now)s::timestamptz - t.issued_at)
                                   * 1000), 0), 2147483647)::integer AS server_ms,
              %(now)s::timestamptz - t.issued_at
                  < st.min_response_ms * interval '1 millisecond' AS too_fast
), vote AS (
    INSERT INTO annotation_vote
        (id, trial_id, session_id, pair_id, kind, choice, preferred, late, response_ms,
         server_ms, too_fast, pilot, client_info, created_at)
    SELECT %(vote_id)s::uuid, answered.id, answered.session_id, answered.pair_id, answered.kind,
           %(choice)s::text,
           CASE WHEN %(choice)s::text = 'similar' THEN 'similar'
                WHEN (%(choice)s::text = 'left') = answered.a_on_left THEN 'a' ELSE 'b' END,
           answered.late, %(response_ms)s::integer, answered.server_ms, answered.too_fast,
           answered.pilot, %(client_info)s::jsonb, %(now)s::timestamptz
    FROM answered
    RETURNING id, late, too_fast, preferred
), tally AS (
    -- stop_when_decided (rule 15): the pair's counted votes with this one (not yet visible
    -- to the statement's own reads) against every answer that may still come and count:
    -- the target's votes not yet given and the leases out past it (GREATEST(target,
    -- n_assigned after this vote) - total) and released trials that may be answered late.
    -- A vote committed concurrently and unseen here is one of those, so the decision
    -- stays exact (annotation.aggregation.decided; sampling.pairs_decide on the ORM path).
    SELECT p.id AS pair_id, c.total,
           c.total < p.target_votes AND p.decided_at IS NULL
           AND GREATEST(c.n_a, c.n_s, c.n_b)
               - (c.total - GREATEST(c.n_a, c.n_s, c.n_b) - LEAST(c.n_a, c.n_s, c.n_b))
               > GREATEST(p.target_votes, p.n_assigned + answered.released::int) - c.total
                 + (SELECT count(*) FROM annotation_trial lt
                    JOIN annotation_annotatorsession ls ON ls.id = lt.session_id
                    WHERE lt.pair_id = answered.pair_id AND lt.kind = 'label' AND lt.released
                      AND lt.answered_at IS NULL AND NOT ls.pilot AND lt.id <> answered.id)
               AS decides
    FROM answered
    JOIN vote ON TRUE
    JOIN annotation_pair p ON p.id = answered.pair_id
    CROSS JOIN LATERAL (
        SELECT n_a, n_s, n_b, n_a + n_s + n_b AS total FROM (
            SELECT count(*) FILTER (WHERE v.preferred = 'a') + (vote.preferred = 'a')::int AS n_a,
                   count(*) FILTER (WHERE v.preferred = 'similar')
                       + (vote.preferred = 'similar')::int AS n_s,
                   count(*) FILTER (WHERE v.preferred = 'b') + (vote.preferred = 'b')::int AS n_b
            FROM annotation_vote v
            WHERE v.pair_id = answered.pair_id AND v.kind = 'label' AND NOT v.too_fast
              AND NOT v.pilot
        ) counted
    ) c
    WHERE answered.stop_when_decided AND answered.kind = 'label' AND NOT answered.too_fast
      AND NOT answered.pilot
), recounted AS (
    UPDATE annotation_pair p
    SET n_assigned = p.n_assigned + CASE
            WHEN answered.released = (answered.too_fast OR answered.pilot) THEN 0
            WHEN answered.released THEN 1 ELSE -1 END,
        -- p.decided_at is the row as updated by a concurrent vote that decided first.
        target_votes = CASE WHEN tally.decides AND p.decided_at IS NULL THEN tally.total
                            ELSE p.target_votes END,
        decided_at = CASE WHEN tally.decides AND p.decided_at IS NULL
                          THEN %(now)s::timestamptz ELSE p.decided_at END
    FROM answered LEFT JOIN tally ON TRUE
    WHERE p.id = answered.pair_id AND answered.kind = 'label'
      AND (answered.released <> (answered.too_fast OR answered.pilot) OR tally.decides)
), moved AS (
    UPDATE annotation_annotatorsession s
    SET n_practice_done = s.n_practice_done + (answered.kind = 'practice' AND NOT answered.too_fast)::int,
        n_done = s.n_done + (answered.kind <> 'practice' AND NOT answered.too_fast)::int,
        open_trial_id = CASE WHEN s.open_trial_id = answered.id THEN s.queued_trial_id
                             ELSE s.open_trial_id END,
        queued_trial_id = CASE WHEN answered.id IN (s.open_trial_id, s.queued_trial_id) THEN NULL
                               ELSE s.queued_trial_id END,
        active_at = CASE WHEN answered.too_fast THEN s.active_at ELSE %(now)s::timestamptz END,
        completed_at = CASE
            WHEN s.completed_at IS NULL AND answered.kind <> 'practice' AND NOT answered.too_fast
                 AND s.n_done + 1 >= st.trials_per_session THEN %(now)s::timestamptz
            ELSE s.completed_at END,
        outcome = CASE
            WHEN s.completed_at IS NULL AND answered.kind <> 'practice' AND NOT answered.too_fast
                 AND s.n_done + 1 >= st.trials_per_session THEN 'quota'
            ELSE s.outcome END
    FROM answered, annotation_study st
    WHERE s.id = answered.session_id AND st.id = s.study_id
    RETURNING s.n_done, s.n_practice_done, s.completed_at, st.practice_trials,
              st.trials_per_session AS quota
)
SELECT vote.id AS vote_id, vote.late, vote.too_fast, moved.*,
       answered.kind = 'label' AND NOT answered.too_fast AND NOT answered.pilot AS counted,
       answered.sampling, answered.sampling_every, answered.scene_id
FROM vote, moved, answered
