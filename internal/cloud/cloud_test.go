package cloud_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/cloud"
	"github.com/shoalci/shoal/internal/doemu"
	"github.com/shoalci/shoal/internal/doemu/doemutest"
)

var epoch = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

type fixture struct {
	emu   *doemutest.Server
	clock *clock.Virtual
	cloud *cloud.DO
}

func newFixture(t *testing.T, opts doemu.Options) *fixture {
	t.Helper()
	vc := clock.NewVirtual(epoch)
	opts.Clock = vc
	emu := doemutest.New(t, opts)
	c, err := cloud.New(cloud.Config{Token: doemutest.Token, APIURL: emu.URL, Clock: vc})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{emu: emu, clock: vc, cloud: c}
}

// run calls fn while moving the virtual clock past every timer fn (or the
// emulator) waits on, the way a simulator does, and returns fn's error.
func (f *fixture) run(t *testing.T, fn func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	for {
		select {
		case err := <-done:
			return err
		case <-time.After(time.Millisecond):
			if next, ok := f.clock.Next(); ok {
				f.clock.AdvanceTo(next)
			}
		}
	}
}

var spec = cloud.DropletSpec{Region: "fra1", Size: "s-2vcpu-4gb", Image: "ubuntu-24-04-x64", Tags: []string{"shoal", "shoal-pool-docker"}}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

func TestCreateAndListInFewRequests(t *testing.T) {
	f := newFixture(t, doemu.Options{})
	ctx := context.Background()
	before := f.emu.Stats().Requests
	made, err := f.cloud.CreateDroplets(ctx, spec, names("shoal-docker", 25))
	if err != nil || len(made) != 25 {
		t.Fatalf("created %d, %v", len(made), err)
	}
	if got := f.emu.Stats().Requests - before; got != 3 {
		t.Fatalf("25 droplets took %d create requests, want 3", got)
	}
	more := spec
	more.Tags = []string{"other"}
	if _, err := f.cloud.CreateDroplets(ctx, more, names("other", 480)); err == nil {
		t.Fatal("went past the droplet limit of 500 without an error")
	} else if !errors.Is(err, cloud.ErrInvalid) || !strings.Contains(err.Error(), "droplet limit") {
		t.Fatalf("over the limit: %v", err)
	}
	before = f.emu.Stats().Requests
	all, err := f.cloud.ListDroplets(ctx, "")
	if err != nil || len(all) != 495 { // 25 + 47 full requests; the 48th would pass 500
		t.Fatalf("listed %d, %v", len(all), err)
	}
	if got := f.emu.Stats().Requests - before; got != 3 {
		t.Fatalf("listing 495 took %d requests, want 3 pages of 200", got)
	}
	tagged, err := f.cloud.ListDroplets(ctx, "shoal-pool-docker")
	if err != nil || len(tagged) != 25 || tagged[0].Name != "shoal-docker-000" || tagged[0].PriceHourly != 0.03571 {
		t.Fatalf("by tag: %d, %+v, %v", len(tagged), tagged[0], err)
	}
}

func TestLostCreateResponseMakesNoDuplicate(t *testing.T) {
	f := newFixture(t, doemu.Options{Faults: doemu.Faults{LostCreateRate: 1}})
	var made []cloud.Droplet
	err := f.run(t, func(ctx context.Context) (err error) {
		made, err = f.cloud.CreateDroplets(ctx, spec, names("shoal-docker", 12))
		return err
	})
	if err != nil || len(made) != 12 {
		t.Fatalf("create with lost responses: %d made, %v", len(made), err)
	}
	all, _ := f.cloud.ListDroplets(context.Background(), "")
	if len(all) != 12 {
		t.Fatalf("%d droplets exist for 12 names: a retry duplicated them", len(all))
	}
}

func TestRetriesThroughServerErrorsAndRateLimits(t *testing.T) {
	f := newFixture(t, doemu.Options{Seed: 3, RateLimitPerMinute: 4, Faults: doemu.Faults{ErrorRate: 0.3}})
	start := f.clock.Now()
	err := f.run(t, func(ctx context.Context) error {
		for range 12 {
			if _, err := f.cloud.Account(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reads through a 5xx storm and a 4/min limit: %v", err)
	}
	st := f.emu.Stats()
	if st.RateLimited == 0 || st.InjectedFaults == 0 {
		t.Fatalf("stats %+v: the storm or the limit never happened", st)
	}
	if elapsed := f.clock.Since(start); elapsed < 2*time.Minute {
		t.Fatalf("12 requests at 4/min finished after %v of clock time: retry-after was not honoured", elapsed)
	}
	if r := f.cloud.Rate(); r.Limit != 5000 || r.Remaining >= 5000 {
		t.Fatalf("rate %+v", r)
	}
}

func TestErrorsAreTestable(t *testing.T) {
	f := newFixture(t, doemu.Options{BootDelay: doemu.Range{Min: time.Second}, ActionDelay: doemu.Range{Min: time.Second}})
	ctx := context.Background()
	_, err := f.cloud.GetDroplet(ctx, 42)
	if !errors.Is(err, cloud.ErrNotFound) {
		t.Fatalf("missing droplet: %v", err)
	}
	bad, _ := cloud.New(cloud.Config{Token: "dop_v1_nope", APIURL: f.emu.URL, Clock: f.clock})
	if _, err := bad.Account(ctx); !errors.Is(err, cloud.ErrUnauthorized) {
		t.Fatalf("bad token: %v", err)
	}
	ds, _ := f.cloud.CreateDroplets(ctx, spec, names("d", 2))
	if _, err := f.cloud.DropletAction(ctx, ds[0].ID, "power_off"); !errors.Is(err, cloud.ErrPendingEvent) {
		t.Fatalf("action while creating: %v", err)
	}
	if _, err := f.cloud.DropletAction(ctx, ds[0].ID, "explode"); !errors.Is(err, cloud.ErrInvalid) {
		t.Fatalf("unknown action: %v", err)
	}
	f.clock.Advance(time.Second) // booted
	var vol cloud.Volume
	err = f.run(t, func(ctx context.Context) (err error) {
		if _, err = f.cloud.DropletAction(ctx, ds[0].ID, "reboot"); err != nil {
			return fmt.Errorf("reboot: %w", err)
		}
		if vol, err = f.cloud.CreateVolume(ctx, cloud.VolumeSpec{Name: "pgdata", Region: "fra1", SizeGiB: 10, FilesystemType: "ext4"}); err != nil {
			return err
		}
		if _, err := f.cloud.CreateVolume(ctx, cloud.VolumeSpec{Name: "pgdata", Region: "fra1", SizeGiB: 1}); !errors.Is(err, cloud.ErrAlreadyExists) {
			return fmt.Errorf("duplicate volume: %v", err)
		}
		if _, err = f.cloud.AttachVolume(ctx, vol.ID, ds[0].ID); err != nil {
			return err
		}
		if _, err := f.cloud.AttachVolume(ctx, vol.ID, ds[1].ID); !errors.Is(err, cloud.ErrAlreadyAttached) {
			return fmt.Errorf("second attach: %v", err)
		}
		if _, err := f.cloud.DetachVolume(ctx, vol.ID, ds[1].ID); !errors.Is(err, cloud.ErrAttachmentNotFound) {
			return fmt.Errorf("detach from the wrong droplet: %v", err)
		}
		if err := f.cloud.DeleteVolume(ctx, vol.ID); !errors.Is(err, cloud.ErrAttached) {
			return fmt.Errorf("delete attached: %v", err)
		}
		if _, err = f.cloud.DetachVolume(ctx, vol.ID, ds[0].ID); err != nil {
			return err
		}
		if _, err = f.cloud.ResizeVolume(ctx, vol.ID, "fra1", 20); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.cloud.GetVolume(ctx, vol.ID)
	if err != nil || got.SizeGiB != 20 || len(got.DropletIDs) != 0 || got.DevicePath() != "/dev/disk/by-id/scsi-0DO_Volume_pgdata" {
		t.Fatalf("volume after detach and resize: %+v, %v", got, err)
	}
	if err := f.cloud.DeleteVolume(ctx, vol.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.cloud.DeleteDroplet(ctx, ds[1].ID); err != nil {
		t.Fatal(err)
	}
	if err := f.cloud.DeleteDroplet(ctx, ds[1].ID); err != nil {
		t.Fatalf("deleting a deleted droplet: %v", err)
	}
}

func TestErroredActionIsAnError(t *testing.T) {
	f := newFixture(t, doemu.Options{BootDelay: doemu.Range{Min: time.Second}, Faults: doemu.Faults{ActionErrorRate: 1}})
	ds, err := f.cloud.CreateDroplets(context.Background(), spec, []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	err = f.run(t, func(ctx context.Context) error {
		_, err := f.cloud.DropletAction(ctx, ds[0].ID, "power_off")
		return err
	})
	if !errors.Is(err, cloud.ErrActionErrored) {
		t.Fatalf("errored action: %v", err)
	}
}

func TestDatabasesKeysAccountBalance(t *testing.T) {
	f := newFixture(t, doemu.Options{Databases: []doemu.DatabaseSeed{{Name: "app", Region: "fra1", Tags: []string{"prod"},
		Pools: []doemu.PoolSeed{{Name: "web", Mode: "transaction", Size: 5, DB: "defaultdb"}}}}})
	ctx := context.Background()
	dbs, err := f.cloud.ListDatabases(ctx, "prod")
	if err != nil || len(dbs) != 1 {
		t.Fatalf("databases: %+v, %v", dbs, err)
	}
	if none, _ := f.cloud.ListDatabases(ctx, "staging"); len(none) != 0 {
		t.Fatalf("tag filter ignored: %+v", none)
	}
	db, err := f.cloud.GetDatabase(ctx, dbs[0].ID)
	if err != nil || db.Connection.Password == "" || len(db.Pools) != 1 || db.Pools[0].Connection.Database != "web" {
		t.Fatalf("database: %+v, %v", db, err)
	}
	if err := f.cloud.SetDatabaseFirewall(ctx, db.ID, []cloud.FirewallRule{{Type: "tag", Value: "shoal"}}); err != nil {
		t.Fatal(err)
	}
	if rules, err := f.cloud.DatabaseFirewall(ctx, db.ID); err != nil || len(rules) != 1 || rules[0].Value != "shoal" {
		t.Fatalf("firewall: %+v, %v", rules, err)
	}

	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pub)
	k, err := f.cloud.CreateSSHKey(ctx, "ci", string(ssh.MarshalAuthorizedKey(sp)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.cloud.GetSSHKey(ctx, k.Fingerprint); err != nil || got.ID != k.ID {
		t.Fatalf("key by fingerprint: %+v, %v", got, err)
	}
	if keys, _ := f.cloud.ListSSHKeys(ctx); len(keys) != 1 {
		t.Fatalf("keys: %+v", keys)
	}
	if err := f.cloud.DeleteSSHKey(ctx, fmt.Sprint(k.ID)); err != nil {
		t.Fatal(err)
	}

	acct, err := f.cloud.Account(ctx)
	if err != nil || acct.DropletLimit != 500 || acct.VolumeLimit != 100 {
		t.Fatalf("account: %+v, %v", acct, err)
	}
	regions, err := f.cloud.Regions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fra1 := slices.IndexFunc(regions, func(r cloud.Region) bool { return r.Slug == "fra1" })
	if len(regions) < 10 || fra1 < 0 || !regions[fra1].Available || !slices.Contains(regions[fra1].Sizes, "s-2vcpu-4gb") {
		t.Fatalf("regions: %+v, %v; want fra1 among them, available, with s-2vcpu-4gb", regions, err)
	}
	images, err := f.cloud.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ubuntu := slices.IndexFunc(images, func(i cloud.Image) bool { return i.Slug == "ubuntu-24-04-x64" })
	if ubuntu < 0 || images[ubuntu].ID == 0 || !slices.Contains(images[ubuntu].Regions, "fra1") {
		t.Fatalf("images: %d, ubuntu-24-04-x64 at %d: want it with an ID, in fra1", len(images), ubuntu)
	}
	if _, err := f.cloud.CreateDroplets(ctx, spec, []string{"billed"}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Hour)
	usd, err := f.cloud.MonthToDateUsage(ctx)
	if err != nil || usd != 0.07 {
		t.Fatalf("usage after 2 h of s-2vcpu-4gb = %v, %v; want 0.07", usd, err)
	}
}

func TestTokenAndURLFromEnv(t *testing.T) {
	t.Setenv("DIGITALOCEAN_ACCESS_TOKEN", "")
	t.Setenv("DIGITALOCEAN_TOKEN", "")
	if _, err := cloud.TokenFromEnv(); err == nil || !strings.Contains(err.Error(), "DIGITALOCEAN_ACCESS_TOKEN") {
		t.Fatalf("no token: %v", err)
	}
	t.Setenv("DIGITALOCEAN_TOKEN", " dop_v1_fallback ")
	if tok, err := cloud.TokenFromEnv(); err != nil || tok != "dop_v1_fallback" {
		t.Fatalf("fallback token %q, %v", tok, err)
	}
	t.Setenv("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_first")
	if tok, _ := cloud.TokenFromEnv(); tok != "dop_v1_first" {
		t.Fatalf("token %q, want DIGITALOCEAN_ACCESS_TOKEN's", tok)
	}
	t.Setenv("DIGITALOCEAN_API_URL", "http://127.0.0.1:8080")
	if u := cloud.APIURLFromEnv(); u != "http://127.0.0.1:8080" {
		t.Fatalf("API URL %q", u)
	}
}

// Under WithBudget every try asks first: retries stop when the budget does.
func TestBudgetStopsRetries(t *testing.T) {
	f := newFixture(t, doemu.Options{Faults: doemu.Faults{ErrorRate: 1}})
	allowed := 3
	err := f.run(t, func(ctx context.Context) error {
		_, err := f.cloud.Account(cloud.WithBudget(ctx, func() bool { allowed--; return allowed >= 0 }))
		return err
	})
	if !errors.Is(err, cloud.ErrBudget) || !errors.Is(err, cloud.ErrServer) {
		t.Fatalf("err = %v, want ErrBudget wrapping the last 5xx", err)
	}
	if n := f.emu.Stats().Requests; n != 3 {
		t.Fatalf("%d requests sent, budget 3", n)
	}
}

// A create the budget stops before it is sent has made nothing: it neither
// looks for Droplets by name nor says the caller should.
func TestBudgetStoppedCreateMadeNothing(t *testing.T) {
	f := newFixture(t, doemu.Options{})
	asked := 0
	made, err := f.cloud.CreateDroplets(cloud.WithBudget(context.Background(), func() bool { asked++; return false }), spec, names("b", 3))
	if len(made) != 0 || !errors.Is(err, cloud.ErrBudget) {
		t.Fatalf("made %d, err %v; want none and ErrBudget", len(made), err)
	}
	if asked != 1 {
		t.Fatalf("the budget was asked %d times: a create never sent needs no lookup", asked)
	}
	if n := f.emu.Stats().Requests; n != 0 {
		t.Fatalf("%d requests sent with no budget", n)
	}
	if cloud.MayHaveTakenEffect(err) {
		t.Fatalf("MayHaveTakenEffect(%v) = true for a create never sent", err)
	}
}

// interpose serves the emulator behind intercept, which answers a request
// itself by returning true, and returns a client of it.
func interpose(t *testing.T, f *fixture, intercept func(w http.ResponseWriter, r *http.Request) bool) *cloud.DO {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !intercept(w, r) {
			f.emu.Server.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := cloud.New(cloud.Config{Token: doemutest.Token, APIURL: srv.URL, Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func isCreate(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/v2/droplets"
}

func TestMayHaveTakenEffect(t *testing.T) {
	ctx := context.Background()
	failing := newFixture(t, doemu.Options{Faults: doemu.Faults{ErrorRate: 1}})
	serverErr := failing.run(t, func(ctx context.Context) error { _, err := failing.cloud.Account(ctx); return err })
	f := newFixture(t, doemu.Options{})
	_, notFound := f.cloud.GetDroplet(ctx, 42)
	_, invalid := f.cloud.DropletAction(ctx, 42, "explode")
	gone, _ := cloud.New(cloud.Config{Token: doemutest.Token, APIURL: "http://127.0.0.1:1", Clock: f.clock})
	noAnswer := f.run(t, func(ctx context.Context) error { _, err := gone.Account(ctx); return err })

	// A create DigitalOcean carried out, whose answer was cut off, and the
	// lookup by name after it refused.
	cut := interpose(t, f, func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case isCreate(r):
			rec := httptest.NewRecorder()
			f.emu.Server.ServeHTTP(rec, r)
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes()[:rec.Body.Len()/2])
		case r.Method == http.MethodGet:
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"id":"forbidden","message":"You do not have access for the attempted action."}`))
		default:
			return false
		}
		return true
	})
	_, cutOff := cut.CreateDroplets(ctx, spec, names("cut", 2))

	// A create answered 500 (made or not, nobody knows), whose retry the
	// budget stopped after the first lookup found nothing.
	failedOnce := false
	flaky := interpose(t, f, func(w http.ResponseWriter, r *http.Request) bool {
		if !isCreate(r) || failedOnce {
			return false
		}
		failedOnce = true
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"id":"server_error","message":"Server Error"}`))
		return true
	})
	allowed := 2 // the create and the lookup
	retryStopped := f.run(t, func(ctx context.Context) error {
		_, err := flaky.CreateDroplets(cloud.WithBudget(ctx, func() bool { allowed--; return allowed >= 0 }), spec, names("flaky", 2))
		return err
	})
	if !errors.Is(retryStopped, cloud.ErrBudget) {
		t.Fatalf("the retry was not stopped by the budget: %v", retryStopped)
	}
	_, budgetOnly := f.cloud.CreateDroplets(cloud.WithBudget(ctx, func() bool { return false }), spec, names("b", 1))

	// A create whose connection dropped, whose retry was refused (422) after
	// the lookup found nothing.
	creates := 0
	refusing := interpose(t, f, func(w http.ResponseWriter, r *http.Request) bool {
		if !isCreate(r) {
			return false
		}
		if creates++; creates == 1 {
			panic(http.ErrAbortHandler) // the connection drops: no answer
		}
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(`{"id":"unprocessable_entity","message":"creating this/these droplet(s) will exceed your droplet limit"}`))
		return true
	})
	retryRefused := f.run(t, func(ctx context.Context) error {
		_, err := refusing.CreateDroplets(ctx, spec, names("refused", 1))
		return err
	})

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"no error", nil, false},
		{"server error", serverErr, true},
		{"not found", notFound, false},
		{"invalid, never sent", invalid, false},
		{"no answer", noAnswer, true},
		{"answer cut off", cutOff, true},
		{"timed out", fmt.Errorf("create: %w", context.DeadlineExceeded), true},
		{"stopped by the budget", budgetOnly, false},
		{"retry stopped by the budget after a server error", retryStopped, true},
		{"retry refused after no answer", retryRefused, true},
	} {
		if got := cloud.MayHaveTakenEffect(tc.err); got != tc.want {
			t.Errorf("%s: MayHaveTakenEffect(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
