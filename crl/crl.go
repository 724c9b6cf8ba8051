// Package crl publishes Gatehouse's certificate revocation list: it has the
// CA generate a new list after revocations and before the current one's
// nextUpdate, keeps the latest list in memory for GET /crl, and writes it as
// PEM to a file that TLS-terminating brokers read (Mosquitto's crlfile),
// then runs a reload command so the broker re-reads it.
//
// The file is never empty, unparsable or expired: Mosquitto accepts revoked
// certificates after a SIGHUP with a broken CRL. Each list is verified
// before it is written, and written to a temporary file in the same
// directory, synced and renamed over the old one, so a reader sees the old
// list or the new one and nothing in between.
//
// Replicas sharing a database share the stored list (its number only rises,
// see store.StoreCRL); each replica installs a list another replica
// generated when woken by the store's announcement (Notify, PostgreSQL) or,
// failing that, at its next poll of the stored number.
package crl

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-iot/gatehouse/fault"
	"github.com/gatehouse-iot/gatehouse/internal/loop"
	"github.com/gatehouse-iot/gatehouse/store"
)

// Generator signs and stores a new list, and reads the stored one.
type Generator interface {
	GenerateCRL(ctx context.Context) (store.CRL, error)
	CurrentCRL(ctx context.Context) (store.CRL, error)
}

// Numbers reads the stored list's number without its body: the cheap poll
// for a list another replica published.
type Numbers interface {
	CRLNumber(ctx context.Context) (int64, error)
}

// Config wires a Publisher.
type Config struct {
	Generator Generator
	// Numbers is optional; without it each poll reads the whole stored list.
	Numbers Numbers
	// Issuer, when set, must have signed every list before it is installed.
	Issuer *x509.Certificate
	// Generation is Issuer's generation (ca rotate), 1 before any rotation;
	// Retired maps the retired intermediates' generations to their
	// certificates. Their lists (store.CRL.Others) are served at
	// /crl/<generation> and follow the current one in File.
	Generation int
	Retired    map[int]*x509.Certificate
	// File, when set, receives every new list as PEM.
	File string
	// ReloadCommand, when set, runs through /bin/sh -c after each write of
	// File, with GATEHOUSE_CRL_FILE and GATEHOUSE_CRL_NUMBER in its
	// environment; it is given ReloadTimeout (default 30s).
	ReloadCommand string
	ReloadTimeout time.Duration
	// Validity is the CA's thisUpdate → nextUpdate (default 24h); the list is
	// regenerated when its nextUpdate is less than RefreshBefore away
	// (default Validity/2).
	Validity      time.Duration
	RefreshBefore time.Duration
	// PollInterval is how often Run looks for a list another replica
	// stored, and retries a failed publication (default 2s).
	PollInterval time.Duration
	// GenerateTimeout bounds one generation, which callers share (default 5m).
	GenerateTimeout time.Duration
	Log             *slog.Logger
	Now             func() time.Time
}

func (c *Config) setDefaults() {
	if c.Validity <= 0 {
		c.Validity = 24 * time.Hour
	}
	if c.RefreshBefore <= 0 {
		c.RefreshBefore = c.Validity / 2
	}
	if c.ReloadTimeout <= 0 {
		c.ReloadTimeout = 30 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.GenerateTimeout <= 0 {
		c.GenerateTimeout = 5 * time.Minute
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Reload is the outcome of one run of the reload command.
type Reload struct {
	At       time.Time
	Number   int64
	Duration time.Duration
	Error    string // "" when it exited 0
	Output   string // its combined output, truncated
}

// Status is what the UI shows about the list.
type Status struct {
	Number        int64
	ThisUpdate    time.Time
	NextUpdate    time.Time
	Entries       int
	File          string
	FileWrittenAt time.Time // zero until the first write
	ReloadCommand bool
	LastReload    *Reload
	// LastError is the latest failure to generate, verify or write a list,
	// cleared by the next success.
	LastError   string
	LastErrorAt time.Time
}

// Current is the installed list, ready to serve: PEM holds the current
// intermediate's list and then every retired one's.
type Current struct {
	store.CRL
	PEM        []byte
	Generation int
}

// ForGeneration returns the DER list of the intermediate of generation
// gen, or nil. Generation 1's list is the one at /crl (ForGeneration(0)),
// which the first intermediate's leaves name; once that intermediate is
// gone, /crl serves the current list.
func (c *Current) ForGeneration(gen int) []byte {
	if gen == 0 || gen == c.Generation {
		if gen == 0 && c.Generation != 1 {
			if der := c.ForGeneration(1); der != nil {
				return der
			}
		}
		return c.DER
	}
	for _, o := range c.Others {
		if o.Generation == gen {
			return o.DER
		}
	}
	return nil
}

// flight is one generation; the callers that joined it wait on done.
type flight struct {
	done chan struct{}
	err  error
}

// Publisher keeps the list current. It is safe for concurrent use.
type Publisher struct {
	cfg Config

	mu      sync.Mutex // guards cur, next, dirty
	cur     *flight    // generation in progress
	next    *flight    // generation queued behind it
	dirty   bool       // the last generation failed; Run retries
	install sync.Mutex // serialises install: one file write at a time

	smu    sync.RWMutex // guards state
	latest *Current
	status Status
	// fileNumber is the number of the list in File; below latest's after
	// a failed write, which install retries.
	fileNumber int64
	// foreign is the degraded state ownList found, "" when none.
	foreign string
	// kick wakes Run before its next tick (Notify).
	wake *loop.Waker
}

// New returns a Publisher.
func New(cfg Config) (*Publisher, error) {
	if cfg.Generator == nil {
		return nil, errors.New("crl: Generator is required")
	}
	cfg.setDefaults()
	if cfg.File != "" {
		abs, err := filepath.Abs(cfg.File)
		if err != nil {
			return nil, fault.Wrap(err, fault.InvalidArgument, "crl.file %q: %v", cfg.File, err)
		}
		cfg.File = abs
	}
	if cfg.ReloadCommand != "" && cfg.File == "" {
		return nil, fault.New(fault.InvalidArgument, "crl.reload_command needs crl.file")
	}
	return &Publisher{cfg: cfg, status: Status{File: cfg.File, ReloadCommand: cfg.ReloadCommand != ""},
		wake: loop.NewWaker()}, nil
}

// Publish returns once a list that includes every revocation committed
// before the call is stored, served and (if configured) written to the
// file. Concurrent calls share generations: a call that arrives while one
// runs waits for the next, which starts when the running one ends and
// serves every caller that arrived meanwhile.
func (p *Publisher) Publish(ctx context.Context) error {
	p.mu.Lock()
	if p.next == nil {
		p.next = &flight{done: make(chan struct{})}
	}
	f := p.next
	if p.cur == nil {
		p.startNextLocked()
	}
	p.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return fault.Wrap(ctx.Err(), fault.Unavailable, "CRL publication still running")
	}
}

// startNextLocked starts the queued generation; p.mu is held.
func (p *Publisher) startNextLocked() {
	f := p.next
	p.cur, p.next = f, nil
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.GenerateTimeout)
		var generated bool
		generated, f.err = p.generate(ctx)
		cancel()
		p.mu.Lock()
		// Only a failed generation needs a new one; a list generated but
		// not written is rewritten by Run without a new number.
		p.dirty = !generated
		close(f.done)
		p.cur = nil
		if p.next != nil {
			p.startNextLocked()
		}
		p.mu.Unlock()
	}()
}

// generate has a new list generated and installs it; generated reports
// whether the list was stored.
func (p *Publisher) generate(ctx context.Context) (generated bool, err error) {
	begin := time.Now()
	c, err := p.cfg.Generator.GenerateCRL(ctx)
	if err != nil {
		p.fail(err)
		return false, err
	}
	p.cfg.Log.Info("CRL generated", "number", c.Number, "entries", c.Entries, "duration", time.Since(begin).Round(time.Millisecond))
	return true, p.installCRL(ctx, c)
}

// Ensure makes sure a valid list exists and is installed: the stored one if
// its nextUpdate is far enough away, a new one otherwise. The server calls
// it before serving, so that the CRL file exists when a broker starts.
func (p *Publisher) Ensure(ctx context.Context) error {
	c, err := p.cfg.Generator.CurrentCRL(ctx)
	if err == nil && p.fresh(c) {
		if err = p.installCRL(ctx, c); err == nil {
			return nil
		}
		if cur := p.Latest(); cur != nil && cur.Number == c.Number {
			return err // the list is good, its file could not be written
		}
		p.cfg.Log.Warn("stored CRL not usable, generating a new one", "number", c.Number, "err", err)
	} else if err != nil && !fault.Is(err, fault.NotFound) {
		p.fail(err)
		return err
	}
	return p.Publish(ctx)
}

// fresh reports whether c's nextUpdate is more than RefreshBefore away.
func (p *Publisher) fresh(c store.CRL) bool {
	return c.NextUpdate.Sub(p.cfg.Now()) > p.cfg.RefreshBefore
}

// Notify asks Run to look for a list another replica stored now, e.g. when
// that replica announces it; it never blocks.
func (p *Publisher) Notify() { p.wake.Wake() }

// Run keeps the list current until ctx ends: it installs lists other
// replicas store, regenerates before nextUpdate, and retries a failed
// publication. Failures are logged and shown in Status; they never stop it.
func (p *Publisher) Run(ctx context.Context) error {
	if err := p.Ensure(ctx); err != nil && ctx.Err() == nil {
		p.cfg.Log.Error("CRL not available yet, retrying", "err", err)
	}
	loop.Run(ctx, p.cfg.PollInterval, p.wake.C(), func(ctx context.Context) {
		if err := p.tick(ctx); err != nil && ctx.Err() == nil {
			p.cfg.Log.Error("CRL upkeep failed", "err", err)
		}
	})
	return nil
}

func (p *Publisher) tick(ctx context.Context) error {
	p.mu.Lock()
	dirty := p.dirty
	p.mu.Unlock()
	cur := p.Latest()
	if cur == nil {
		return p.Ensure(ctx)
	}
	if dirty || !p.fresh(cur.CRL) {
		return p.Publish(ctx)
	}
	p.smu.RLock()
	unwritten := p.cfg.File != "" && p.fileNumber < cur.Number
	p.smu.RUnlock()
	if unwritten {
		if err := p.installCRL(ctx, cur.CRL); err != nil {
			return err
		}
	}
	var (
		n   int64
		err error
	)
	if p.cfg.Numbers != nil {
		n, err = p.cfg.Numbers.CRLNumber(ctx)
		if err != nil || n <= cur.Number {
			return err
		}
	}
	stored, err := p.cfg.Generator.CurrentCRL(ctx)
	if err != nil {
		return err
	}
	if stored.Number <= cur.Number {
		return nil
	}
	if !p.fresh(stored) {
		return p.Publish(ctx)
	}
	err = p.installCRL(ctx, stored)
	if errors.Is(err, errForeignSet) {
		// Rather than serve the older list until it goes stale: sign the
		// store's revocations with this replica's intermediate.
		return p.Publish(ctx)
	}
	return err
}

// Latest returns the installed list, nil before the first.
func (p *Publisher) Latest() *Current {
	p.smu.RLock()
	defer p.smu.RUnlock()
	return p.latest
}

// Serve returns the list to serve: the installed one, or the stored one
// when this replica has none installed yet (its publisher not running).
func (p *Publisher) Serve(ctx context.Context) (*Current, error) {
	if c := p.Latest(); c != nil {
		return c, nil
	}
	c, err := p.cfg.Generator.CurrentCRL(ctx)
	if err != nil {
		return nil, err
	}
	return &Current{CRL: c, PEM: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.DER})}, nil
}

// Status reports the installed list, the file and the reload command.
func (p *Publisher) Status() Status {
	p.smu.RLock()
	defer p.smu.RUnlock()
	s := p.status
	if s.LastReload != nil {
		r := *s.LastReload
		s.LastReload = &r
	}
	return s
}

func (p *Publisher) fail(err error) {
	p.smu.Lock()
	p.status.LastError, p.status.LastErrorAt = err.Error(), p.cfg.Now()
	p.smu.Unlock()
}

// installCRL verifies c, makes it the served list, writes the file and runs
// the reload command. A list not newer than the installed one is ignored:
// installs race (a poll and a publication), and the number never goes back.
func (p *Publisher) installCRL(ctx context.Context, c store.CRL) error {
	p.install.Lock()
	defer p.install.Unlock()
	p.smu.RLock()
	cur, fileNumber := p.latest, p.fileNumber
	p.smu.RUnlock()
	if cur != nil && c.Number < cur.Number || c.Number <= fileNumber ||
		cur != nil && c.Number == cur.Number && p.cfg.File == "" {
		return nil
	}
	c, rl, err := p.ownList(c)
	if err != nil {
		err = fmt.Errorf("CRL %d not installed: %w", c.Number, err)
		p.fail(err)
		return err
	}
	c.Entries = len(rl.RevokedCertificateEntries)
	cur = &Current{CRL: c, PEM: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.DER}), Generation: max(p.cfg.Generation, 1)}
	if cur.Others, err = p.verifyOthers(c.Others); err != nil {
		err = fmt.Errorf("CRL %d not installed: %w", c.Number, err)
		p.fail(err)
		return err
	}
	for _, o := range cur.Others {
		cur.PEM = append(cur.PEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: o.DER})...)
	}
	p.smu.Lock()
	p.latest = cur
	p.status.Number, p.status.ThisUpdate, p.status.NextUpdate, p.status.Entries = c.Number, c.ThisUpdate, c.NextUpdate, c.Entries
	p.smu.Unlock()
	if p.cfg.File == "" {
		p.clearError()
		return nil
	}
	if keep, err := p.fileIsNewer(ctx, c.Number); keep || err != nil {
		return err
	}
	if err := WriteFileAtomic(p.cfg.File, cur.PEM, 0o644); err != nil {
		err = fmt.Errorf("write CRL %d to %s: %w", c.Number, p.cfg.File, err)
		p.fail(err)
		return err
	}
	p.smu.Lock()
	p.status.FileWrittenAt, p.fileNumber = p.cfg.Now(), c.Number
	p.smu.Unlock()
	p.clearError()
	p.cfg.Log.Info("CRL file written", "file", p.cfg.File, "number", c.Number, "entries", c.Entries)
	if p.cfg.ReloadCommand != "" {
		p.reload(ctx, c.Number)
	}
	return nil
}

// fileIsNewer reports whether File already holds a list of this
// issuer's lineage numbered n or higher, which must not be replaced by list
// n: replicas that share the file (a shared volume) race, and one that
// installs a list it read a moment ago would otherwise put an older list
// over a newer one another replica wrote, dropping its revocations until
// the next poll. A higher number counts only when the store has reached it
// (the other replica stored it before writing); a file numbered beyond the
// store (a database restored from a backup) is replaced, since only the
// store knows today's revocations.
func (p *Publisher) fileIsNewer(ctx context.Context, n int64) (bool, error) {
	data, err := os.ReadFile(p.cfg.File)
	if err != nil {
		return false, nil // absent (or unreadable, which the write reports)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "X509 CRL" {
		return false, nil
	}
	h, ok := readHeader(block.Bytes, p.cfg.Issuer)
	if !ok || h.number < n || !h.nextUpdate.After(p.cfg.Now()) {
		return false, nil // broken, foreign, older or expired: write ours
	}
	had := h.number
	if had == n {
		// The same number is the same list: another replica wrote it.
		p.smu.Lock()
		p.fileNumber = max(p.fileNumber, n)
		p.smu.Unlock()
		return true, nil
	}
	stored, err := p.storedNumber(ctx)
	if err != nil {
		// Keep the newer file; the write is retried by Run.
		err = fmt.Errorf("CRL %d not written over the file's newer %d: %w", n, had, err)
		p.fail(err)
		return true, err
	}
	if stored < had {
		p.cfg.Log.Warn("CRL file numbered beyond the stored list; replacing it", "file", p.cfg.File, "file_number", had, "stored", stored)
		return false, nil
	}
	p.cfg.Log.Info("CRL file already holds a newer list", "file", p.cfg.File, "number", n, "file_number", had)
	return true, nil
}

func (p *Publisher) storedNumber(ctx context.Context) (int64, error) {
	if p.cfg.Numbers != nil {
		return p.cfg.Numbers.CRLNumber(ctx)
	}
	c, err := p.cfg.Generator.CurrentCRL(ctx)
	if fault.Is(err, fault.NotFound) {
		return 0, nil
	}
	return c.Number, err
}

// readFile parses the list in File and checks it as installCRL checks a new
// one: signed by the issuer, not expired.
func (p *Publisher) readFile() (*x509.RevocationList, error) {
	data, err := os.ReadFile(p.cfg.File)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "X509 CRL" {
		return nil, errors.New("not a PEM X509 CRL")
	}
	return p.verify(block.Bytes)
}

// CheckFile reports whether File (when configured) holds a list a broker
// can use now: present, parsable, signed by the issuer and not expired.
// The server checks it when Ensure fails at start, and refuses to start
// without one: a broker started without a usable CRL file either refuses to
// start or, worse, runs without checking revocations.
func (p *Publisher) CheckFile() error {
	if p.cfg.File == "" {
		return nil
	}
	if _, err := p.readFile(); err != nil {
		return fmt.Errorf("CRL file %s: %w", p.cfg.File, err)
	}
	return nil
}

func (p *Publisher) clearError() {
	p.smu.Lock()
	p.status.LastError, p.status.LastErrorAt = "", time.Time{}
	p.smu.Unlock()
}

// verify checks that der is a list a broker can use now: it parses, is
// signed by the issuer (when configured) and is not expired.
func (p *Publisher) verify(der []byte) (*x509.RevocationList, error) {
	return p.verifyBy(der, p.cfg.Issuer)
}

// verifyBy is verify against issuer (none: no signature check).
func (p *Publisher) verifyBy(der []byte, issuer *x509.Certificate) (*x509.RevocationList, error) {
	if len(der) == 0 {
		return nil, errors.New("empty CRL")
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("unparsable CRL: %w", err)
	}
	if issuer != nil {
		if err := rl.CheckSignatureFrom(issuer); err != nil {
			return nil, fmt.Errorf("CRL not signed by the issuing CA: %w", err)
		}
	}
	now := p.cfg.Now()
	if rl.NextUpdate.IsZero() || !rl.NextUpdate.After(now) {
		return nil, fmt.Errorf("CRL expired at %s", rl.NextUpdate.Format(time.RFC3339))
	}
	return rl, nil
}

// errForeignSet is installCRL's error for a stored set that holds no list
// signed by this replica's intermediate: Run then signs a set of its own.
var errForeignSet = errors.New("no list in the set is signed by this replica's intermediate")

// ownList returns c with this replica's intermediate's list as its main
// one, and that list parsed. A replica not yet restarted after "ca rotate"
// (another replica, restarted, stored the set) finds the set's main list
// signed by an intermediate it does not know; its own intermediate, now
// retired there, signed one of the others with the same number and
// entries, and that one is as good: it installs it, without the list it
// cannot verify, logs loudly and reports itself degraded until restarted.
func (p *Publisher) ownList(c store.CRL) (store.CRL, *x509.RevocationList, error) {
	rl, err := p.verify(c.DER)
	if err == nil || p.cfg.Issuer == nil {
		p.setForeign("")
		return c, rl, err
	}
	for i, o := range c.Others {
		own, oerr := p.verifyBy(o.DER, p.cfg.Issuer)
		if oerr != nil {
			continue
		}
		msg := fmt.Sprintf("CRL %d was stored by a replica with a newer intermediate (ca rotate): serving this intermediate's list; restart this replica to load the new one", c.Number)
		p.setForeign(msg)
		c.DER, c.NextUpdate = o.DER, own.NextUpdate
		c.Others = append(slices.Clone(c.Others[:i]), c.Others[i+1:]...)
		return c, own, nil
	}
	p.setForeign(fmt.Sprintf("CRL %d is not signed by this replica's intermediate: %v; signing a set of its own", c.Number, err))
	return c, nil, fmt.Errorf("%w: %v", errForeignSet, err)
}

// setForeign records (msg) or clears ("") the degraded state ownList
// found, logging each new one as an error.
func (p *Publisher) setForeign(msg string) {
	p.smu.Lock()
	was := p.foreign
	p.foreign = msg
	p.smu.Unlock()
	if msg != "" && msg != was {
		p.cfg.Log.Error("CRL set from another replica", "problem", msg)
	}
}

// Degraded reports a stored set this replica could not fully verify (see
// ownList), for the readiness probe.
func (p *Publisher) Degraded() []string {
	if p == nil {
		return nil // CRLs not enabled
	}
	p.smu.RLock()
	defer p.smu.RUnlock()
	if p.foreign == "" {
		return nil
	}
	return []string{p.foreign}
}

// verifyOthers checks the retired intermediates' lists like verify, each
// against its own issuer. A list of a generation this replica does not
// hold as retired (its files are gone), or whose intermediate has expired
// since this replica started, is left out: its leaves have all expired,
// and its list (which ends at its issuer's expiry) must not hold back the
// current intermediate's.
func (p *Publisher) verifyOthers(others []store.IssuerCRL) ([]store.IssuerCRL, error) {
	var out []store.IssuerCRL
	now := p.cfg.Now()
	for _, o := range others {
		issuer, ok := p.cfg.Retired[o.Generation]
		if !ok || !issuer.NotAfter.After(now) {
			continue
		}
		if _, err := p.verifyBy(o.DER, issuer); err != nil {
			return nil, fmt.Errorf("retired intermediate %d's list: %w", o.Generation, err)
		}
		out = append(out, o)
	}
	return out, nil
}

// maxOutput caps the reload command output kept for Status.
const maxOutput = 2048

func (p *Publisher) reload(ctx context.Context, number int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.ReloadTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", p.cfg.ReloadCommand)
	cmd.Env = append(os.Environ(), "GATEHOUSE_CRL_FILE="+p.cfg.File, "GATEHOUSE_CRL_NUMBER="+strconv.FormatInt(number, 10))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A command that leaves a child holding its output must not hang us.
	cmd.WaitDelay = time.Second
	begin := time.Now()
	err := cmd.Run()
	r := &Reload{At: p.cfg.Now(), Number: number, Duration: time.Since(begin)}
	output := out.Bytes()
	if len(output) > maxOutput {
		output = output[:maxOutput]
	}
	r.Output = string(output)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %s: %w", p.cfg.ReloadTimeout, err)
		}
		r.Error = err.Error()
		p.cfg.Log.Error("CRL reload command failed", "number", number, "err", err, "output", r.Output)
	} else {
		p.cfg.Log.Info("CRL reload command ran", "number", number, "duration", r.Duration.Round(time.Millisecond))
	}
	p.smu.Lock()
	p.status.LastReload = r
	p.smu.Unlock()
}

// WriteFileAtomic replaces path with data: a temporary file in the same
// directory is written, synced and renamed over path, and the directory is
// synced, so a reader sees either the old content or the new, and a crash
// leaves one of them on disk.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil // renamed; the directory sync is best effort
	}
	_ = d.Sync()
	_ = d.Close()
	return nil
}
