package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// faults holds the fault injection in force. Its zero state injects
// nothing; only an enabled server changes it.
type faults struct {
	enabled    bool
	log        *slog.Logger
	setBypass  func(bool)
	errorRatio atomic.Uint64 // math.Float64bits
	latency    atomic.Int64  // nanoseconds
	bypass     atomic.Bool

	mu     sync.Mutex
	held   []byte
	amount int64
}

func newFaults(cfg FaultConfig, logger *slog.Logger, setBypass func(bool)) *faults {
	f := &faults{enabled: cfg.Enabled, log: logger, setBypass: setBypass}
	if cfg.Enabled {
		f.apply(faultState{
			ErrorRatio:  cfg.ErrorRatio,
			Latency:     cfg.Latency.String(),
			MemoryBytes: cfg.MemoryBytes,
			CacheBypass: cfg.CacheBypass,
		})
	}
	return f
}

// faultState is the body of GET and PUT /admin/faults.
type faultState struct {
	ErrorRatio  float64 `json:"error_ratio"`
	Latency     string  `json:"latency"`
	MemoryBytes int64   `json:"memory_bytes"`
	CacheBypass bool    `json:"cache_bypass"`
}

func (f *faults) state() faultState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return faultState{
		ErrorRatio:  math.Float64frombits(f.errorRatio.Load()),
		Latency:     time.Duration(f.latency.Load()).String(),
		MemoryBytes: f.amount,
		CacheBypass: f.bypass.Load(),
	}
}

// apply sets every fault to s; s must have been validated.
func (f *faults) apply(s faultState) {
	lat, _ := time.ParseDuration(s.Latency)
	f.errorRatio.Store(math.Float64bits(s.ErrorRatio))
	f.latency.Store(int64(lat))
	f.bypass.Store(s.CacheBypass)
	f.setBypass(s.CacheBypass)
	f.holdMemory(s.MemoryBytes)
	f.log.Warn("fault_injection_set", "error_ratio", s.ErrorRatio, "latency", lat,
		"memory_bytes", s.MemoryBytes, "cache_bypass", s.CacheBypass)
}

// holdMemory allocates n bytes and writes to every page, so that the
// process's resident memory really grows; n of zero releases it.
func (f *faults) holdMemory(n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n == f.amount {
		return
	}
	f.held, f.amount = nil, 0
	if n == 0 {
		debug.FreeOSMemory()
		return
	}
	f.held = make([]byte, n)
	for i := 0; i < len(f.held); i += 4096 {
		f.held[i] = 1
	}
	f.amount = n
}

// inject delays the request by the configured latency and reports whether
// it should be failed.
func (f *faults) inject(ctx context.Context) (fail bool) {
	if !f.enabled {
		return false
	}
	if lat := time.Duration(f.latency.Load()); lat > 0 {
		t := time.NewTimer(lat)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	ratio := math.Float64frombits(f.errorRatio.Load())
	return ratio > 0 && rand.Float64() < ratio
}

func (f *faults) release() { f.holdMemory(0) }

// errFaultsDisabled is what /admin/faults answers when faults are off.
var errFaultsDisabled = errors.New(
	"fault injection is disabled: start with --faults-enabled or FAULTS_ENABLED=true")

func (s *Server) getFaults(w http.ResponseWriter, r *http.Request) {
	if !s.faults.enabled {
		s.writeError(w, r, http.StatusForbidden, errFaultsDisabled)
		return
	}
	writeJSON(w, http.StatusOK, s.faults.state())
}

// putFaults replaces the fault state; fields left out are set to zero.
func (s *Server) putFaults(w http.ResponseWriter, r *http.Request) {
	if !s.faults.enabled {
		s.writeError(w, r, http.StatusForbidden, errFaultsDisabled)
		return
	}
	var st faultState
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		s.writeError(w, r, http.StatusBadRequest, fmt.Errorf("decode fault state: %w", err))
		return
	}
	if st.Latency == "" {
		st.Latency = "0s"
	}
	lat, err := time.ParseDuration(st.Latency)
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, fmt.Errorf("fault latency: %w", err))
		return
	}
	check := FaultConfig{Enabled: true, ErrorRatio: st.ErrorRatio, Latency: lat,
		MemoryBytes: st.MemoryBytes, CacheBypass: st.CacheBypass}
	if err := check.validate(); err != nil {
		s.writeError(w, r, http.StatusBadRequest, err)
		return
	}
	s.faults.apply(st)
	writeJSON(w, http.StatusOK, s.faults.state())
}
