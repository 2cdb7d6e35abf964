-- 0005: bounds on genretry.policy (issue 10: nothing an admin writes can stall the rescue). A stale_after
-- of a thousand years, or counts in the billions, would overflow the deadline arithmetic or park every
-- row forever. NOT VALID: an existing row outside the bounds is kept (and survived: the trigger and the
-- claim bound what they compute); any new or changed row must be within them.
ALTER TABLE genretry.policy ADD CONSTRAINT policy_bounded CHECK (
    stale_after <= interval '30 days' AND pending_stale_after <= interval '30 days'
    AND backoff_max <= interval '1 day' AND pause_for <= interval '1 day'
    AND max_retries <= 1000 AND max_dispatch_failures <= 1000 AND pause_after_failures <= 1000) NOT VALID;
COMMENT ON CONSTRAINT policy_bounded ON genretry.policy IS
    'staleness up to 30 days, backoff and pauses up to a day, counts up to 1000';
