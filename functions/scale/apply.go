package scale

// Applying: a decision becomes an NVCF write under the version's write
// claim (shared/store/claims.go), at most once per cycle, and its outcome
// is recorded.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"function/shared/nvcf"
	"function/shared/policy"
	"function/shared/store"
	"function/shared/telemetry"
	"function/shared/tsdb"
)

// apply acts on one version's decision: holds and unchanged counts write
// nothing, nor does a count NVCF would clamp to the max it already runs
// (clampedNoop), nor a cycle already applied (a replay or a late event);
// anything else is written. running is the version's own running
// instances (-1 when unknown).
func (h *Handler) apply(ctx context.Context, log *slog.Logger, o *Outcome, v store.ActiveVersion, st store.ScalingState, d policy.Decision,
	cycle int64, running int) {
	key := v.VersionKey
	recheck := clampRecheckSteps * h.d.Settings.Scale.Step
	switch {
	case !d.Valid:
		o.Action = "held"
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusHeld)
	case st.HasLastRequested && d.Desired == st.LastRequested:
		o.Action = "unchanged"
		if st.HasAppliedTarget {
			reportClamp(o, st.LastRequested, st.AppliedTarget)
		}
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusOK)
	case clampedNoop(st, d.Desired, running, h.d.Now(), recheck):
		o.Action = "clamped"
		reportClamp(o, st.LastRequested, st.AppliedTarget)
		o.Detail += fmt.Sprintf("; not written: NVCF would clamp %d to the same max (written again after %s to see whether the max was raised)",
			d.Desired, recheck)
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusOK)
	case st.LastCycle >= cycle:
		// This cycle (or a newer one) already wrote this version: the
		// event is a replay or arrived late.
		o.Action = "already_applied"
	default:
		h.write(ctx, log, o, v, st, d.Desired, cycle, func(fresh store.ScalingState) (bool, string) {
			if fresh.LastCycle >= cycle {
				return false, "already_applied"
			}
			if fresh.HasLastRequested && fresh.LastRequested == d.Desired {
				return false, "unchanged"
			}
			return true, ""
		})
	}
}

// nvcfTarget is the instance count the NVCF API says it targets after a
// write: active + pending + allocating (terminating ones are leaving). An
// answer without counts (a dry run, the legacy HTTP API's empty body) says
// nothing, -1, rather than "zero"; so does a function that is not ACTIVE,
// whose request the API ignores rather than clamps.
func nvcfTarget(r nvcf.Result) int {
	n := r.ActiveInstances + r.PendingInstances + r.AllocatingInstances
	switch {
	case r.DryRun, n == 0 && r.FunctionStatus == "" && r.ScalingStatus == "":
		return -1
	case r.FunctionStatus != "" && r.FunctionStatus != "ACTIVE":
		return -1
	}
	return n
}

// clampRecheckSteps is how many steps (UTILIZATION_STEP) a version that
// NVCF clamped to its max goes without a write that would only be clamped
// again. NVCF tells a version's max only in its answer to a write, so the
// only way to learn that an operator raised it is to write: once every
// five steps (five minutes in production) instead of every cycle.
const clampRecheckSteps = 5

// lastTarget is the count NVCF targets after the version's last write:
// the request, or the max NVCF clamped it to. The policy measures its
// moves from it: from the request, a version clamped to 20 that the
// policy asked 67 of kept asking more (each step multiplies a count that
// never ran), and coming down took cycles of moves from 67 that changed
// nothing while 20 ran.
func lastTarget(st store.ScalingState) int {
	if clampedToMax(st) {
		return st.AppliedTarget
	}
	return st.LastRequested
}

// clampedToMax reports whether NVCF clamped the last request down to the
// version's max (a target of 0 is not taken for a max: NVCF's max is at
// least 1, and an answer with no instances yet says nothing).
func clampedToMax(st store.ScalingState) bool {
	return st.HasLastRequested && st.HasAppliedTarget && st.AppliedTarget > 0 && st.AppliedTarget < st.LastRequested
}

// clampedNoop reports whether writing desired would change nothing: NVCF
// clamped the last request to its max, and desired is at or above that
// max, so NVCF would target the same count again. It never blocks a real
// change: a count below the max is written; so is any count once more
// run than the max NVCF last answered (it was raised since), and once
// recheck has passed since the last write (only a write's answer tells
// whether the max was raised).
func clampedNoop(st store.ScalingState, desired, running int, now time.Time, recheck time.Duration) bool {
	switch {
	case !clampedToMax(st), desired < st.AppliedTarget, running > st.AppliedTarget:
		return false
	case desired == st.AppliedTarget:
		return true // wanting no more than the max, there is nothing to learn by asking
	}
	return now.Sub(st.LastWrittenAt) < recheck
}

// reportClamp says so in the outcome when the NVCF API targets another
// count than the request: it clamps requests to the sum of the version's
// min and max instances. The request stays the policy's count, so a
// clamped version is not written again every cycle; only its outcome
// tells why the count it runs differs from the one decided.
func reportClamp(o *Outcome, requested, target int) {
	if target == requested {
		return
	}
	bound := "max"
	if target > requested {
		bound = "min"
	}
	o.ClampedTo = &target
	clamp := fmt.Sprintf("clamped by NVCF to %d (%s)", target, bound)
	if o.Detail == "" {
		o.Detail = clamp
	} else {
		o.Detail += "; " + clamp
	}
}

const (
	statusOK           = "ok"
	statusNotFound     = "not_found"
	statusBeyondLimits = "beyond_limits"
)

// write claims the version's next NVCF write, writes it, and records the
// outcome: one Paxos round (the claim) and one plain write (the record)
// per write. st is the state the decision was made from; the claim applies
// only if nobody claimed the version since st was read, which is what makes
// stillNeeded's verdict on st current. A claim lost to another writer is
// looked at once more from a fresh read (the winner may have been a
// different, finished cycle). cycle is stored as the applied cycle;
// activations pass 0 and store the state's own cycle, so they never block
// the next bucket decision.
func (h *Handler) write(ctx context.Context, log *slog.Logger, o *Outcome, v store.ActiveVersion, st store.ScalingState, desired int, cycle int64,
	stillNeeded func(store.ScalingState) (bool, string)) {
	s := h.d.Settings.Scale
	key := v.VersionKey
	// Unique per write attempt: two events for the same version in one
	// process (a redelivery racing the original, concurrent activations)
	// must not share a claim, or both would pass it.
	owner := fmt.Sprintf("%s/%d/%d", h.d.Settings.NodeID, cycle, h.seq.Add(1))
	var claimedAt time.Time
	for attempt := 0; ; attempt++ {
		if st.Claim.Held() {
			// Another writer holds the version right now; it decides from
			// the same inputs or newer ones.
			o.Action = "locked"
			h.d.Metrics.Lock("function", &store.ClaimTakenError{Key: key, Owner: st.Claim.Owner})
			return
		}
		if ok, why := stillNeeded(st); !ok {
			o.Action = why
			return
		}
		if st.HasLastRequested && st.LastCycle > cycle {
			cycle = st.LastCycle
		}
		claimedAt = time.Now()
		err := h.d.Store.ClaimWrite(ctx, key, store.WriteClaim{Owner: owner, Cycle: cycle, Requested: desired}, st.Claim.Owner, s.FunctionLockTTL, s.StateTTL)
		if store.IsClaimTaken(err) && attempt == 0 {
			fresh, rerr := h.readState(ctx, key)
			if rerr != nil {
				o.Action, o.Error = "error", rerr.Error()
				return
			}
			st = fresh
			continue
		}
		h.d.Metrics.Lock("function", err)
		if store.IsClaimTaken(err) {
			o.Action = "locked"
			return
		}
		if err != nil {
			// Not claimed, or unknown: nothing is written. A claim that
			// applied unseen holds the version until its lease ends.
			o.Action, o.Error = "error", err.Error()
			return
		}
		break
	}
	if st.Claim.Unconfirmed() {
		// The last claim expired unsettled: its writer stopped, or its
		// record was lost, so NVCF may or may not have its count. Writing
		// is the only way to be sure; the outcome says so.
		note := fmt.Sprintf("the claim of cycle %d for %d expired unconfirmed (NVCF may have it)", st.Claim.Cycle, st.Claim.Requested)
		log.Warn("writing over an unconfirmed claim", "claim", st.Claim.Owner, "claim_cycle", st.Claim.Cycle, "claim_requested", st.Claim.Requested)
		if o.Detail == "" {
			o.Detail = note
		} else {
			o.Detail += "; " + note
		}
	}
	// The write must end while the claim is held, or a second writer could
	// start before this one's record lands.
	wctx, cancel := context.WithTimeout(ctx, s.FunctionLockTTL-time.Second)
	defer cancel()
	result, err := h.d.NVCF.Autoscale(wctx, nvcf.Request{
		FunctionID: key.FunctionID, FunctionVersionID: key.FunctionVersionID, NcaID: v.NcaID, Instances: desired,
	})
	rctx := context.WithoutCancel(ctx)
	switch {
	case err == nil:
		target := nvcfTarget(result)
		if rerr := h.recordWrite(rctx, log, key, owner, desired, target, cycle, claimedAt.Add(s.FunctionLockTTL/2)); rerr != nil {
			// The NVCF write happened, but read back at SERIAL the record
			// is absent or unknown (a record whose lost answer turned out
			// applied is no error), however often it was tried while the
			// claim held. The claim stays unsettled: until its
			// lease ends the Knative retry and other replicas find the
			// version locked instead of writing it a second time; after
			// it, a later cycle writes over it knowing the count it
			// claimed (NVCF treats the same count again as a no-op).
			log.Warn("write claim left unsettled until its lease ends: the NVCF write is not recorded", "lease", s.FunctionLockTTL.String())
			h.d.Metrics.Writes.WithLabelValues("not_recorded").Inc()
			o.Action, o.Error = "error", "written but not recorded: "+rerr.Error()
			return
		}
		o.Action, o.Applied = "written", &result
		if target >= 0 {
			reportClamp(o, desired, target)
		}
		h.d.Metrics.Writes.WithLabelValues("ok").Inc()
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusOK)
	case errors.Is(err, nvcf.ErrNotFound):
		o.Action, o.Error = "not_found", err.Error()
		h.d.Metrics.Writes.WithLabelValues("not_found").Inc()
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusNotFound)
		if rerr := h.d.Store.RecordOutcome(rctx, key, owner, st.LastCycle, statusNotFound, h.d.Now(), s.StateTTL); rerr != nil {
			log.Warn("record not-found outcome", "error", rerr.Error())
		}
	case errors.Is(err, nvcf.ErrBeyondLimits):
		o.Action, o.Error = "beyond_limits", err.Error()
		h.d.Metrics.Writes.WithLabelValues("beyond_limits").Inc()
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, telemetry.StatusBeyondLimits)
		if rerr := h.d.Store.RecordOutcome(rctx, key, owner, cycle, statusBeyondLimits, time.Time{}, s.StateTTL); rerr != nil {
			log.Warn("record beyond-limits outcome", "error", rerr.Error())
		}
	default:
		o.Action, o.Error = "error", err.Error()
		h.d.Metrics.Writes.WithLabelValues("error").Inc()
		code := telemetry.StatusError
		if errors.Is(err, nvcf.ErrRateLimited) {
			code = telemetry.StatusRateLimited
		}
		h.d.Metrics.VersionStatus(key.FunctionID, key.FunctionVersionID, float64(code))
		// The retry (the bucket answers 503) must not find its own
		// failed attempt holding the version.
		h.settle(ctx, log, key, owner)
	}
}

// recordWrite records an NVCF write made under owner's claim. A record
// that fails is tried again, with back-off, while until has not passed:
// a written count left unrecorded would be written again by a later
// cycle, so a short Cassandra outage is waited out. until is half the
// claim's lease after the claim: the claim still holds the version then,
// so no other writer can have recorded since, and a late record's
// timestamp stays before any record made after the lease.
func (h *Handler) recordWrite(ctx context.Context, log *slog.Logger, key store.VersionKey, owner string, desired, target int, cycle int64,
	until time.Time) error {
	backoff := 100 * time.Millisecond
	for {
		err := h.d.Store.RecordWriteTarget(ctx, key, owner, desired, target, cycle, statusOK, h.d.Settings.Scale.StateTTL)
		if err == nil || time.Now().Add(backoff).After(until) {
			return err
		}
		log.Warn("NVCF write not recorded; trying the record again while the claim holds", "error", err.Error())
		time.Sleep(backoff)
		backoff *= 2
	}
}

// settle gives up a claim whose write was not made or failed.
func (h *Handler) settle(ctx context.Context, log *slog.Logger, key store.VersionKey, owner string) {
	if err := h.d.Store.SettleClaim(context.WithoutCancel(ctx), key, owner, h.d.Settings.Scale.StateTTL); err != nil {
		log.Warn("settle write claim", "error", err.Error())
	}
}

// recordKeepAlive records what an applied decision means for learned
// keep-alive: a write above zero from zero starts a cold start to measure
// (ended by gathering when the first worker reports), a written pre-warm
// is marked with the burst end it counted from, and a pending pre-warm
// whose outcome the metrics now show is settled and counted once.
func (h *Handler) recordKeepAlive(ctx context.Context, log *slog.Logger, o Outcome, v store.ActiveVersion, st store.ScalingState,
	in policy.Input, d policy.Decision, obs observation) {
	key := v.VersionKey
	if o.Action == "written" && o.Desired > 0 && st.HasLastRequested && st.LastRequested == 0 && in.CurrentKnown && in.Current == 0 {
		if err := h.saveState(ctx, key, func(u *store.StateUpdate) { u.ColdFrom(in.Now) }); err != nil {
			log.Warn("mark cold start", "error", err.Error())
		}
	}
	if o.Action == "written" && d.Reason == policy.ReasonPrewarm {
		h.d.Metrics.Prewarms.WithLabelValues("written").Inc()
		if err := h.saveState(ctx, key, func(u *store.StateUpdate) { u.Prewarm(in.Now, in.LastInvokedAt) }); err != nil {
			// Only the outcome goes uncounted; the pre-warm itself stands.
			log.Warn("mark pre-warm", "error", err.Error())
		}
		return
	}
	h.settlePrewarm(ctx, log, key, obs.keepAlive, st, obs.metrics)
}

// settlePrewarm counts a pending pre-warm's outcome once it is known.
func (h *Handler) settlePrewarm(ctx context.Context, log *slog.Logger, key store.VersionKey, k keepAlive, st store.ScalingState, m tsdb.VersionMetrics) {
	outcome := prewarmOutcome(k, st, m)
	if outcome == "" {
		return
	}
	if k.prewarmIn != (store.VersionKey{}) {
		key = k.prewarmIn // a gateway function's marker, in the row it was written to
	}
	cleared, err := h.d.Store.SettlePrewarm(ctx, key, k.prewarmAt)
	if err != nil {
		log.Warn("settle pre-warm; its outcome goes uncounted", "outcome", outcome, "error", err.Error())
		return
	}
	if !cleared {
		return // another replica or an earlier event counted it
	}
	h.d.Metrics.Prewarms.WithLabelValues(outcome).Inc()
	log.Info("pre-warm settled", "outcome", outcome, "prewarm_at", k.prewarmAt, "prewarm_for", k.prewarmFor)
}
