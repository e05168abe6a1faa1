package doemu_test

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-metadata"
	"github.com/digitalocean/godo"

	"github.com/shoalci/shoal/internal/config"
	"github.com/shoalci/shoal/internal/doemu"
)

func TestSSHKeys(t *testing.T) {
	f := newFixture(t, doemu.Options{})
	pub := testKey(t)
	k, _, err := f.do.Keys.Create(f.ctx, &godo.KeyCreateRequest{Name: "deploy", PublicKey: pub})
	if err != nil || len(k.Fingerprint) != 47 {
		t.Fatalf("create key = %+v, %v", k, err)
	}
	_, _, err = f.do.Keys.Create(f.ctx, &godo.KeyCreateRequest{Name: "again", PublicKey: pub})
	apiError(t, err, 422, "already in use")
	_, _, err = f.do.Keys.Create(f.ctx, &godo.KeyCreateRequest{Name: "bad", PublicKey: "ssh-rsa not-base64!"})
	apiError(t, err, 422, "Key invalid")
	byFP, _, err := f.do.Keys.GetByFingerprint(f.ctx, k.Fingerprint)
	if err != nil || byFP.ID != k.ID {
		t.Fatalf("get by fingerprint = %+v, %v", byFP, err)
	}
	up, _, err := f.do.Keys.UpdateByID(f.ctx, k.ID, &godo.KeyUpdateRequest{Name: "renamed"})
	if err != nil || up.Name != "renamed" {
		t.Fatalf("update = %+v, %v", up, err)
	}
	if list, _, err := f.do.Keys.List(f.ctx, nil); err != nil || len(list) != 1 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if _, err := f.do.Keys.DeleteByFingerprint(f.ctx, k.Fingerprint); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.do.Keys.GetByID(f.ctx, k.ID)
	apiError(t, err, 404, "could not be found")
}

func TestDatabasesFromSeed(t *testing.T) {
	f := newFixture(t, doemu.Options{Databases: []doemu.DatabaseSeed{
		{Name: "app-db", Region: "fra1", Tags: []string{"production"}, Password: "s3cret",
			Pools:    []doemu.PoolSeed{{Name: "web", Mode: "transaction", Size: 10, DB: "defaultdb"}},
			Firewall: []doemu.FirewallRule{{Type: "tag", Value: "shoal"}}},
		{Name: "other", Region: "nyc3"},
	}})
	all, _, err := f.do.Databases.List(f.ctx, nil)
	if err != nil || len(all) != 2 {
		t.Fatalf("list = %d, %v", len(all), err)
	}
	req, _ := f.do.NewRequest(f.ctx, "GET", "v2/databases?tag_name=production", nil)
	var tagged struct{ Databases []godo.Database }
	if _, err := f.do.Do(f.ctx, req, &tagged); err != nil || len(tagged.Databases) != 1 || tagged.Databases[0].Name != "app-db" {
		t.Fatalf("by tag = %+v, %v", tagged.Databases, err)
	}
	db, _, err := f.do.Databases.Get(f.ctx, tagged.Databases[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	c := db.Connection
	if c.User != "doadmin" || c.Password != "s3cret" || c.Port != 25060 || !c.SSL || c.Database != "defaultdb" {
		t.Fatalf("connection = %+v", c)
	}
	u, err := url.Parse(c.URI)
	if err != nil || u.Query().Get("sslmode") != "require" || u.Host != c.Host+":25060" {
		t.Fatalf("uri %q: %v", c.URI, err)
	}
	if db.PrivateConnection.Host == c.Host {
		t.Fatalf("private connection host equals public: %s", c.Host)
	}
	pools, _, err := f.do.Databases.ListPools(f.ctx, db.ID, nil)
	if err != nil || len(pools) != 1 || pools[0].Connection.Port != 25061 || pools[0].Connection.Database != "web" {
		t.Fatalf("pools = %+v, %v", pools, err)
	}
	if p, _, err := f.do.Databases.GetPool(f.ctx, db.ID, "web"); err != nil || p.Mode != "transaction" || p.Size != 10 {
		t.Fatalf("pool web = %+v, %v", p, err)
	}
	_, _, err = f.do.Databases.GetPool(f.ctx, db.ID, "missing")
	apiError(t, err, 404, "could not be found")
	if ca, _, err := f.do.Databases.GetCA(f.ctx, db.ID); err != nil || !strings.Contains(string(ca.Certificate), "BEGIN CERTIFICATE") {
		t.Fatalf("CA = %+v, %v", ca, err)
	}
	rules, _, err := f.do.Databases.GetFirewallRules(f.ctx, db.ID)
	if err != nil || len(rules) != 1 || rules[0].Type != "tag" {
		t.Fatalf("firewall = %+v, %v", rules, err)
	}
	_, err = f.do.Databases.UpdateFirewallRules(f.ctx, db.ID, &godo.DatabaseUpdateFirewallRulesRequest{
		Rules: []*godo.DatabaseFirewallRule{{Type: "ip_addr", Value: "192.0.2.10"}, {Type: "droplet", Value: "123"}}})
	if err != nil {
		t.Fatal(err)
	}
	if rules, _, _ = f.do.Databases.GetFirewallRules(f.ctx, db.ID); len(rules) != 2 || rules[0].UUID == "" {
		t.Fatalf("firewall after update = %+v", rules)
	}
	_, err = f.do.Databases.UpdateFirewallRules(f.ctx, db.ID, &godo.DatabaseUpdateFirewallRulesRequest{
		Rules: []*godo.DatabaseFirewallRule{{Type: "planet", Value: "earth"}}})
	apiError(t, err, 422, "invalid rule")
	_, _, err = f.do.Databases.Get(f.ctx, "00000000-0000-4000-8000-000000000000")
	apiError(t, err, 404, "could not be found")
}

func TestBalanceFromLedger(t *testing.T) {
	for _, tc := range []struct {
		model config.BillingModel
		life  time.Duration
		want  float64
	}{
		{config.BillingPerSecond, 30 * time.Second, 60 * 0.03571 / 3600}, // the 60 s minimum
		{config.BillingPerSecond, 90 * time.Minute, 1.5 * 0.03571},       // by the second
		{config.BillingHourly, 61 * time.Minute, 2 * 0.03571},            // each started hour
		{config.BillingPerSecond, 40 * 24 * time.Hour, 24 + 249*0.03571}, // March capped at its monthly price, then 249 h of April
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.model, tc.life), func(t *testing.T) {
			f := newFixture(t, doemu.Options{Billing: tc.model, BootDelay: doemu.Range{Min: time.Second}})
			d := f.create(t, runnerRequest("billed"))
			f.clock.Advance(tc.life)
			if _, err := f.do.Droplets.Delete(f.ctx, d.ID); err != nil {
				t.Fatal(err)
			}
			f.clock.Advance(time.Hour) // deleted Droplets cost nothing more
			got := f.emu.BilledUSD(f.clock.Now())
			if math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("billed %.6f, want %.6f", got, tc.want)
			}
			bal, _, err := f.do.Balance.Get(f.ctx)
			if err != nil {
				t.Fatal(err)
			}
			usage, _ := strconv.ParseFloat(bal.MonthToDateUsage, 64)
			if tc.life < 24*time.Hour && math.Abs(usage-tc.want) > 0.005 {
				t.Fatalf("month_to_date_usage %s, want %.2f", bal.MonthToDateUsage, tc.want)
			}
		})
	}
}

func TestRateLimits(t *testing.T) {
	f := newFixture(t, doemu.Options{RateLimitPerMinute: 5, RateLimitPerHour: 8})
	for i := range 5 {
		_, resp, err := f.do.Account.Get(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Rate.Limit != 8 || resp.Rate.Remaining != 8-(i+1) {
			t.Fatalf("request %d: rate %+v", i, resp.Rate)
		}
		f.clock.Advance(time.Second)
	}
	_, resp, err := f.do.Account.Get(f.ctx)
	apiError(t, err, http.StatusTooManyRequests, "Rate limit")
	if ra := resp.Header.Get("retry-after"); ra != "55" {
		t.Fatalf("retry-after %q, want 55 (the first request leaves the minute window then)", ra)
	}
	f.clock.Advance(60 * time.Second) // the minute window is empty again
	for range 3 {
		if _, _, err := f.do.Account.Get(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, resp, err = f.do.Account.Get(f.ctx)
	apiError(t, err, http.StatusTooManyRequests, "Rate limit") // the hourly budget of 8 is spent
	if resp.Rate.Remaining != 0 || resp.Rate.Reset.Time.Sub(epoch) != time.Hour {
		t.Fatalf("rate after hourly limit = %+v", resp.Rate)
	}
	if got := f.emu.Stats().RateLimited; got != 2 {
		t.Fatalf("stats counted %d rate-limited responses, want 2", got)
	}
}

func TestFaultInjection(t *testing.T) {
	t.Run("5xx storm", func(t *testing.T) {
		f := newFixture(t, doemu.Options{Seed: 7, Faults: doemu.Faults{ErrorRate: 0.5}})
		codes := map[int]int{}
		for range 200 {
			_, resp, _ := f.do.Regions.List(f.ctx, nil)
			codes[resp.StatusCode]++
		}
		if codes[200] < 60 || codes[500] < 30 || codes[503] < 30 || len(codes) != 3 {
			t.Fatalf("status codes %v, want about half 5xx split between 500 and 503", codes)
		}
	})
	t.Run("errored actions", func(t *testing.T) {
		f := newFixture(t, doemu.Options{BootDelay: doemu.Range{Min: time.Minute}, Faults: doemu.Faults{ActionErrorRate: 1}})
		d, resp, err := f.do.Droplets.Create(f.ctx, runnerRequest("doomed"))
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Minute)
		act, _, _ := f.do.Actions.Get(f.ctx, resp.Links.Actions[0].ID)
		got, _, _ := f.do.Droplets.Get(f.ctx, d.ID)
		if act.Status != "errored" || got.Status != "new" {
			t.Fatalf("errored create: action %s, droplet %s; want errored and stuck in new", act.Status, got.Status)
		}
	})
	t.Run("lost create response", func(t *testing.T) {
		f := newFixture(t, doemu.Options{Faults: doemu.Faults{LostCreateRate: 1}})
		_, _, err := f.do.Droplets.Create(f.ctx, runnerRequest("ghost"))
		apiError(t, err, 500, "unable to give you a response")
		list, _, err := f.do.Droplets.ListByName(f.ctx, "ghost", nil)
		if err != nil || len(list) != 1 {
			t.Fatalf("the droplet behind a lost response: %d found, %v", len(list), err)
		}
	})
	t.Run("bad settings", func(t *testing.T) {
		if _, err := doemu.New(doemu.Options{Faults: doemu.Faults{ErrorRate: 1.5}}); err == nil {
			t.Fatal("error rate 1.5 accepted")
		}
	})
}

func TestMetadataServiceThroughGoMetadata(t *testing.T) {
	f := newFixture(t, doemu.Options{BootDelay: doemu.Range{Min: time.Second}})
	req := runnerRequest("meta")
	req.UserData = "#!/bin/sh\necho hello\n"
	d := f.create(t, req)
	f.clock.Advance(time.Second)
	base, err := url.Parse(doemu.MetadataURL(f.emu.URL, d.ID))
	if err != nil {
		t.Fatal(err)
	}
	md := metadata.NewClient(metadata.WithBaseURL(base))
	if id, err := md.DropletID(); err != nil || id != d.ID {
		t.Fatalf("id = %d, %v", id, err)
	}
	if h, err := md.Hostname(); err != nil || h != "meta" {
		t.Fatalf("hostname = %q, %v", h, err)
	}
	if ud, err := md.UserData(); err != nil || ud != req.UserData {
		t.Fatalf("user-data = %q, %v", ud, err)
	}
	if tags, err := md.Tags(); err != nil || len(tags) != 2 || tags[1] != "shoal-pool-docker" {
		t.Fatalf("tags = %v, %v", tags, err)
	}
	if r, err := md.Region(); err != nil || r != "fra1" {
		t.Fatalf("region = %q, %v", r, err)
	}
	all, err := md.Metadata()
	if err != nil || all.DropletID != d.ID || len(all.Interfaces["public"]) != 1 || all.Interfaces["private"][0].IPv4.IPAddress == "" {
		t.Fatalf("v1.json = %+v, %v", all, err)
	}
	gone := metadata.NewClient(metadata.WithBaseURL(&url.URL{Scheme: "http", Host: base.Host, RawQuery: "droplet_id=1"}))
	if _, err := gone.DropletID(); err == nil {
		t.Fatal("metadata for a droplet that does not exist")
	}
}
