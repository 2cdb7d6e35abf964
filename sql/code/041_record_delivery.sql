-- genretry.record_delivery(id, lease_id, outcome, http_status, detail, retry_after, worker, now, jitter):
-- record the outcome of one delivery, atomically with the row and the generator's circuit. Called by the
-- daemon once per claimed row, in its own short transaction. Outcomes (the daemon classifies, SPEC 4):
--   accepted      2xx or 409            counted; deadline = now + stale_after; the generator owns the row
--   timeout       no answer, or 504     counted; as accepted (staleness decides); a circuit failure too:
--                                       a generator that accepts connections and never answers is paused
--   server_error  500 (and other 5xx)   counted; due again after backoff
--   unreachable   refused/reset before sending, DNS, TLS, 502, 503, 429, 408, redirect, a status outside
--                 200-599, an answer that is not HTTP (any peer's fault)
--                                       not counted; dispatch_failures + 1; backoff (>= Retry-After);
--                                       fails "generator unreachable: ..." after max_dispatch_failures
--   unauthorized  401, 403              not counted; the generator's circuit opens; the row waits
--   rejected      400, 404, 410, 422 (other 4xx)   not counted; the row fails with the generator's message
--   unsendable    the stored row cannot become a request (not an object, too large, too deep)
--                                       not counted; the row fails, saying the retry was never sent
--   released      never sent (shutdown) not counted; due again now, same attempt
-- A lease that is no longer current (forced admin call, lease lost) records nothing but a `stale_record`
-- event. A row finished by its generator while leased still has its retry counted.
-- Returns: result (recorded|stale), status, deadline_at, retry_count, dispatch_failures, exhausted_by
-- (an error_message when this outcome failed the row) and circuit (opened|closed|NULL: what changed).
CREATE OR REPLACE FUNCTION genretry.record_delivery(
    p_id uuid, p_lease_id uuid, p_outcome text, p_http_status integer DEFAULT NULL,
    p_detail jsonb DEFAULT '{}', p_retry_after interval DEFAULT NULL, p_worker text DEFAULT NULL,
    p_now timestamptz DEFAULT now(), p_jitter double precision DEFAULT random())
RETURNS TABLE (result text, status text, deadline_at timestamptz, retry_count integer,
               dispatch_failures integer, failed_with text, circuit text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = genretry, public, pg_temp
SET plan_cache_mode = force_generic_plan  -- every statement here is by primary key
AS $$
DECLARE
    h public.generation_history;
    pol genretry.policy;
    live boolean;
    counted boolean := p_outcome IN ('accepted', 'timeout', 'server_error');
    circuit_failure boolean := p_outcome IN ('unreachable', 'server_error', 'unauthorized', 'timeout');
    circuit_success boolean := p_outcome IN ('accepted', 'rejected');
    label text := coalesce(p_detail ->> 'label', p_http_status::text, p_outcome);
    new_status text;
    new_deadline timestamptz;
    new_phase text;
    new_error text;
    new_failures integer;
    wait interval;
    change text;
BEGIN
    IF p_outcome IS NULL OR p_outcome NOT IN ('accepted', 'timeout', 'server_error', 'unreachable',
                                              'unauthorized', 'rejected', 'unsendable', 'released') THEN
        RAISE EXCEPTION 'genretry.record_delivery: unknown outcome %', p_outcome
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the daemon's role records on the server's clock and with a jitter in [0, 1] (issue 10, class 10)
    p_now := genretry.caller_clock(p_now);
    p_jitter := least(greatest(coalesce(p_jitter, 0.5), 0.0), 1.0);
    PERFORM set_config('genretry.quiet', 'on', true);

    SELECT * INTO h FROM public.generation_history g WHERE g.id = p_id FOR UPDATE;
    IF NOT FOUND OR h.lease_id IS DISTINCT FROM p_lease_id THEN
        PERFORM genretry.log_event(p_id, h.generator, h.attempt, 'stale_record',
            jsonb_build_object('outcome', p_outcome, 'http_status', p_http_status, 'lease_id', p_lease_id),
            p_worker, session_user, p_now);
        RETURN QUERY SELECT 'stale'::text, h.status, h.deadline_at, h.retry_count, h.dispatch_failures,
                            NULL::text, NULL::text;
        RETURN;
    END IF;

    pol := genretry.effective_policy(h.generator);
    live := h.status IN ('pending', 'generating');
    new_status := h.status;
    new_error := h.error_message;
    new_failures := CASE WHEN counted THEN 0 ELSE h.dispatch_failures END;
    new_phase := NULL;
    new_deadline := NULL;

    IF live THEN
        CASE p_outcome
        WHEN 'accepted', 'timeout' THEN
            new_phase := 'delivered';
            new_deadline := p_now + pol.stale_after;
        WHEN 'server_error' THEN
            new_phase := 'backoff';
            new_deadline := p_now + genretry.backoff_delay(pol, least(h.retry_count, 2147483646) + 1, p_jitter);
        WHEN 'unreachable' THEN
            new_failures := least(h.dispatch_failures, 2147483646) + 1;  -- a hostile row at int max
            IF new_failures >= pol.max_dispatch_failures THEN
                new_status := 'failed';
                new_error := format('generator unreachable: %s (%s failed deliveries to %s)',
                                    left(coalesce(p_detail ->> 'message', label), 500), new_failures, h.generator);
            ELSE
                new_phase := 'unsent';
                wait := genretry.backoff_delay(pol, new_failures, p_jitter);
                -- honour Retry-After, but never park a row for more than an hour on a peer's say-so
                IF p_retry_after IS NOT NULL THEN
                    -- in plain seconds: '1 month -719 hours' is 1 hour to least() but 25 hours when added
                    wait := greatest(wait, least(make_interval(secs => greatest(least(
                        extract(epoch FROM p_retry_after), 3600), 0)::float8), interval '1 hour'));
                END IF;
                new_deadline := p_now + wait;
            END IF;
        WHEN 'unauthorized' THEN
            new_phase := 'unsent';
            new_deadline := p_now;  -- due again as soon as the generator's pause ends
        WHEN 'rejected' THEN
            new_status := 'failed';
            new_error := format('generator %s rejected the retry (%s): %s',
                                left(regexp_replace(h.generator, '[^[:print:]]', '?', 'g'), 80), label,
                                left(coalesce(p_detail ->> 'message', 'no message'), 1000));
        WHEN 'unsendable' THEN
            new_status := 'failed';
            -- the message says what to fix: the stored request, or the row's generator name (SPEC 3.1)
            new_error := format('retry not sent to %s: %s',
                                left(regexp_replace(h.generator, '[^[:print:]]', '?', 'g'), 80),
                                left(coalesce(p_detail ->> 'message', 'invalid request'), 500));
        WHEN 'released' THEN
            new_phase := 'unsent';
            new_deadline := p_now;
        END CASE;
    END IF;

    UPDATE public.generation_history g SET
        status = new_status,
        error_message = new_error,
        retry_count = least(g.retry_count, 2147483646) + CASE WHEN counted THEN 1 ELSE 0 END,
        dispatch_failures = new_failures,
        retry_phase = new_phase,
        deadline_at = new_deadline,
        lease_id = NULL,
        lease_until = NULL,
        last_outcome = CASE WHEN p_outcome = 'released' THEN g.last_outcome ELSE label END
    WHERE g.id = p_id
    RETURNING * INTO h;

    PERFORM genretry.log_event(h.id, h.generator, h.attempt,
        CASE p_outcome
            WHEN 'accepted' THEN 'delivered' WHEN 'timeout' THEN 'delivery_timeout'
            WHEN 'server_error' THEN 'delivery_failed' WHEN 'unreachable' THEN 'delivery_failed'
            WHEN 'unauthorized' THEN 'delivery_unauthorized' WHEN 'rejected' THEN 'rejected'
            WHEN 'unsendable' THEN 'not_sent'
            ELSE 'released' END,
        coalesce(p_detail, '{}') || jsonb_build_object(
            'outcome', p_outcome, 'http_status', p_http_status, 'counted', counted,
            'retry_count', h.retry_count, 'dispatch_failures', h.dispatch_failures,
            'retry_after_s', extract(epoch FROM p_retry_after), 'next_due_at', h.deadline_at),
        p_worker, session_user, p_now);
    IF live AND h.status = 'failed' THEN
        PERFORM genretry.log_event(h.id, h.generator, h.attempt,
            CASE p_outcome WHEN 'unreachable' THEN 'unreachable' ELSE 'failed' END,
            jsonb_build_object('error_message', h.error_message), p_worker, session_user, p_now);
    END IF;

    -- the generator's circuit breaker (039_circuit_after.sql)
    change := genretry.circuit_after(h, p_outcome, label, p_lease_id, circuit_failure, circuit_success, pol,
                                     p_worker, p_now);

    RETURN QUERY SELECT 'recorded'::text, h.status, h.deadline_at, h.retry_count, h.dispatch_failures,
                        CASE WHEN live AND h.status = 'failed' THEN h.error_message END, change;
END
$$;
COMMENT ON FUNCTION genretry.record_delivery(uuid, uuid, text, integer, jsonb, interval, text, timestamptz, double precision) IS
    'daemon: record one delivery outcome (SPEC 4), counting retries and driving the generator circuit';
