package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/config"
)

const example = `# shoal autoscaler
reconcile_interval = "20s"
rate_budget = 0.5
billing_model = "hourly"

[[pool]]
name = "docker"
tags = ["docker"]
run_untagged = true
region = "fra1"
size = "s-4vcpu-8gb"
image = "docker-20-04"
capacity_per_instance = 4
min_instances = 0
max_instances = 40
idle_count = 2
idle_time = "10m"
scale_factor = 0.5
scale_factor_limit = 8

  [[pool.policy]]
  periods = ["* 8-17 * * mon-fri"]
  timezone = "Europe/Berlin"
  idle_count = 8
  min_instances = 1

  [[pool.policy]]
  periods = ["* 12 * * *"]
  idle_time = "30m"

[[pool]]
name = "large"
tags = ["docker", "large"]
`

func TestParseExample(t *testing.T) {
	cfg, err := config.Parse("shoal.toml", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReconcileInterval != 20*time.Second || cfg.RateBudget != 0.5 || cfg.Billing != config.BillingHourly {
		t.Errorf("globals: %+v", cfg)
	}
	if got := cfg.RequestsPerMinute(); got != 125 {
		t.Errorf("RequestsPerMinute = %d, want 125", got)
	}
	if got := cfg.RequestsPerHour(); got != 2500 {
		t.Errorf("RequestsPerHour = %d, want 2500", got)
	}
	if len(cfg.Pools) != 2 {
		t.Fatalf("pools: %d", len(cfg.Pools))
	}
	p := cfg.Pools[0]
	want := config.Scaling{MinInstances: 0, MaxInstances: 40, IdleCount: 2, IdleTime: 10 * time.Minute, ScaleFactor: 0.5, ScaleFactorLimit: 8}
	if p.Name != "docker" || p.Region != "fra1" || p.Size != "s-4vcpu-8gb" || p.Image != "docker-20-04" ||
		p.CapacityPerInstance != 4 || !reflect.DeepEqual(p.Tags, []string{"docker"}) || !p.RunUntagged || p.Scaling != want {
		t.Errorf("pool docker: %+v", p)
	}
	if len(p.Periods) != 2 || p.Periods[0].Timezone.String() != "Europe/Berlin" || p.Periods[1].Timezone != time.UTC {
		t.Errorf("periods: %+v", p.Periods)
	}
	large, ok := cfg.Pool("large")
	if !ok {
		t.Fatal("pool large missing")
	}
	def := config.DefaultPool("large")
	def.Tags = []string{"docker", "large"}
	if !reflect.DeepEqual(large, def) {
		t.Errorf("defaults: got %+v, want %+v", large, def)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := config.Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*cfg, config.Default()) {
		t.Errorf("empty file: %+v, want %+v", cfg, config.Default())
	}
	if cfg.Billing != config.BillingPerSecond || cfg.ReconcileInterval != 15*time.Second || cfg.RequestsPerMinute() != 200 {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestEffective(t *testing.T) {
	cfg, err := config.Parse("shoal.toml", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pools[0]
	berlin, _ := time.LoadLocation("Europe/Berlin")
	tests := []struct {
		name      string
		at        time.Time
		period    int
		idleCount int
		idleTime  time.Duration
		min       int
	}{
		// Monday 2026-11-23.
		{"before office hours", time.Date(2026, 11, 23, 7, 59, 0, 0, berlin), -1, 2, 10 * time.Minute, 0},
		{"office hours, Berlin time", time.Date(2026, 11, 23, 8, 0, 0, 0, berlin), 0, 8, 10 * time.Minute, 1},
		{"office hours seen from UTC", time.Date(2026, 11, 23, 16, 59, 59, 0, time.UTC), 0, 8, 10 * time.Minute, 1},
		{"after office hours", time.Date(2026, 11, 23, 18, 0, 0, 0, berlin), -1, 2, 10 * time.Minute, 0},
		// 12:xx UTC is 13:xx in Berlin: both periods match; the last one wins,
		// and it overrides only idle_time.
		{"last match wins", time.Date(2026, 11, 23, 12, 30, 0, 0, time.UTC), 1, 2, 30 * time.Minute, 0},
		{"weekend noon", time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), 1, 2, 30 * time.Minute, 0},
		{"weekend morning", time.Date(2026, 11, 28, 9, 0, 0, 0, berlin), -1, 2, 10 * time.Minute, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := p.Effective(tt.at)
			if s.Period != tt.period || s.IdleCount != tt.idleCount || s.IdleTime != tt.idleTime || s.MinInstances != tt.min {
				t.Errorf("got period %d idle_count %d idle_time %s min %d, want %d %d %s %d",
					s.Period, s.IdleCount, s.IdleTime, s.MinInstances, tt.period, tt.idleCount, tt.idleTime, tt.min)
			}
			if s.Pool != "docker" || s.CapacityPerInstance != 4 || s.MaxInstances != 40 {
				t.Errorf("unchanged settings changed: %+v", s)
			}
		})
	}
}

func TestCronDayOfMonthOrDayOfWeek(t *testing.T) {
	// Cron ORs day-of-month and day-of-week when both are restricted.
	cfg, err := config.Parse("c.toml", []byte(`
[[pool]]
name = "a"
  [[pool.policy]]
  periods = ["* * 1 * sun"]
  idle_count = 3
`))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pools[0]
	for _, tc := range []struct {
		at   time.Time
		want int
	}{
		{time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), 3},  // Tuesday the 1st
		{time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC), 3}, // a Sunday
		{time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC), 0}, // Monday the 30th
	} {
		if got := p.Effective(tc.at).IdleCount; got != tc.want {
			t.Errorf("%s: idle_count %d, want %d", tc.at, got, tc.want)
		}
	}
}

func TestPeriodCannotExceedMax(t *testing.T) {
	cfg, err := config.Parse("c.toml", []byte(`
[[pool]]
name = "a"
max_instances = 3
  [[pool.policy]]
  periods = ["* * * * *"]
  min_instances = 5
`))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Pools[0].Effective(time.Unix(0, 0)); s.MinInstances != 3 {
		t.Errorf("min_instances %d, want capped at max 3", s.MinInstances)
	}
}

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		name string
		toml string
		// want lists "line:key:fragment" for every problem, in line order.
		want []string
	}{
		{"unknown global key", "reconcile_intervall = \"10s\"\n", []string{"1:reconcile_intervall:unknown key"}},
		{"shutdown limit too short", "[daemon]\nshutdown_limit = \"10s\"\n", []string{"2:daemon.shutdown_limit:at least a minute"}},
		{"unreadable limit too short", "[gitlab]\nunreadable_limit = \"1m\"\n", []string{"2:gitlab.unreadable_limit:at least 5 minutes"}},
		{"daemon tables", `[gitlab]
url = "gitlab.example.com"
project = ["a/b"]
jobs_api_per_minute = 0
[daemon]
ssh_keys = "ab:cd"
[[pool]]
name = "docker"
runner_id = 0
runner_token_env = "MY-TOKEN"
`, []string{
			"2:gitlab.url:not a GitLab address",
			"3:gitlab.project:unknown key",
			"4:gitlab.jobs_api_per_minute:at least 1",
			"6:daemon.ssh_keys:array of strings",
			"9:pool.runner_id:at least 1",
			"10:pool.runner_token_env:not an environment variable name",
		}},
		{"bad globals all at once", `reconcile_interval = "soon"
rate_budget = 1.5
billing_model = "monthly"
`, []string{
			"1:reconcile_interval:not a duration",
			"2:rate_budget:must be a share",
			"3:billing_model:must be \"per-second\" or \"hourly\"",
		}},
		{"many pool problems", `[[pool]]
name = "Docker_Pool"
tags = "docker"
capacity_per_instance = 0
min_instances = -1
max_instances = "ten"
idle_time = 300
scale_factor = -0.5
IdleCount = 2
region = "NYC 3"
run_untagged = "yes"
`, []string{
			"2:pool.name:lowercase",
			"3:pool.tags:array of strings",
			"4:pool.capacity_per_instance:at least 1",
			"5:pool.min_instances:at least 0",
			"6:pool.max_instances:whole number",
			"7:pool.idle_time:must be a duration string",
			"8:pool.scale_factor:not be negative",
			"9:pool.IdleCount:unknown key",
			"10:pool.region:not a DigitalOcean slug",
			"11:pool.run_untagged:must be true or false",
		}},
		{"missing name and duplicate pool", `[[pool]]
tags = ["a"]

[[pool]]
name = "x"

[[pool]]
name = "x"
`, []string{"1:pool.name:is required", "7:pool.name:defined twice (first on line 4)"}},
		{"min above max", `[[pool]]
name = "x"
min_instances = 5
max_instances = 2
`, []string{"3:pool.min_instances:more than max_instances"}},
		{"bad periods", `[[pool]]
name = "x"
  [[pool.policy]]
  periods = ["* 8-18 * * mon-fri", "61 * * * *", "@every 5m"]
  timezone = "Mars/Olympus"
  idle_count = 1.5
  preemptive_mode = true

  [[pool.policy]]
  idle_count = 1
`, []string{
			"4:pool.policy.periods:\"61 * * * *\"",
			"4:pool.policy.periods:@every",
			"5:pool.policy.timezone:not an IANA timezone",
			"6:pool.policy.idle_count:whole number",
			"7:pool.policy.preemptive_mode:unknown key",
			"9:pool.policy.periods:is required",
		}},
		{"duplicate key", `rate_budget = 0.5
rate_budget = 0.6
`, []string{"2:rate_budget:defined twice (first on line 1)"}},
		{"syntax error", `[[pool]]
name = "x
`, []string{"2::TOML syntax"}},
		{"table where a value belongs", `[billing_model]
x = 1
`, []string{"1:billing_model:must be a value"}},
		{"pool as a plain table", `[pool]
name = "x"
`, []string{"1:pool:must be written as [[pool]]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse("bad.toml", []byte(tt.toml))
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			var cerr *config.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("error %T %v is not a *config.Error", err, err)
			}
			if len(cerr.Problems) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(cerr.Problems), len(tt.want), err)
			}
			for i, w := range tt.want {
				parts := strings.SplitN(w, ":", 3)
				p := cerr.Problems[i]
				if got := p.String(); !strings.HasPrefix(got, "bad.toml:"+parts[0]+":") ||
					p.Key != parts[1] || !strings.Contains(p.Msg, parts[2]) {
					t.Errorf("problem %d = %q (key %q), want line %s key %q containing %q", i, got, p.Key, parts[0], parts[1], parts[2])
				}
			}
			// The one error lists every problem, each on its own line.
			if n := strings.Count(err.Error(), "\n"); n != len(tt.want) {
				t.Errorf("error has %d lines of problems, want %d:\n%v", n, len(tt.want), err)
			}
		})
	}
}

func TestInlineTables(t *testing.T) {
	cfg, err := config.Parse("i.toml", []byte(`pool = [{name = "a", tags = ["x"], policy = [{periods = ["* * * * *"], idle_count = 2}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pools) != 1 || cfg.Pools[0].Effective(time.Unix(0, 0)).IdleCount != 2 {
		t.Errorf("inline pools: %+v", cfg.Pools)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "shoal.toml")
	if err := os.WriteFile(path, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil || len(cfg.Pools) != 2 {
		t.Fatalf("Load: %v %+v", err, cfg)
	}
	if _, err := config.Load(filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "read autoscaler config") {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(path, []byte("pool = 3\n"), 0o600)
	if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), path+":1: pool") {
		t.Errorf("bad file error should name the file and line: %v", err)
	}
}

func TestBilling(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		model     config.BillingModel
		age       time.Duration
		paidUntil time.Duration
		billed    float64
	}{
		{config.BillingPerSecond, 10 * time.Second, 60 * time.Second, 60},
		{config.BillingPerSecond, 90 * time.Second, 90 * time.Second, 90},
		{config.BillingHourly, 10 * time.Second, time.Hour, 3600},
		{config.BillingHourly, time.Hour, 2 * time.Hour, 3600},
		{config.BillingHourly, 61 * time.Minute, 2 * time.Hour, 7200},
	}
	for _, tt := range tests {
		if got := tt.model.PaidUntil(t0, t0.Add(tt.age)).Sub(t0); got != tt.paidUntil {
			t.Errorf("%s PaidUntil after %s = %s, want %s", tt.model, tt.age, got, tt.paidUntil)
		}
		if got := tt.model.BilledSeconds(tt.age); got != tt.billed {
			t.Errorf("%s BilledSeconds(%s) = %g, want %g", tt.model, tt.age, got, tt.billed)
		}
	}
}

// TestDocsExample keeps the examples in docs/autoscaling.md valid: every
// TOML block parses, and the daemon's complete file is complete.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/autoscaling.md")
	if err != nil {
		t.Fatal(err)
	}
	var pools, daemon *config.Config
	for rest, n := string(doc), 1; ; n++ {
		var ok bool
		if _, rest, ok = strings.Cut(rest, "```toml\n"); !ok {
			break
		}
		var block string
		if block, rest, ok = strings.Cut(rest, "```"); !ok {
			t.Fatalf("TOML block %d of docs/autoscaling.md does not end", n)
		}
		cfg, err := config.Parse(fmt.Sprintf("docs/autoscaling.md, TOML block %d", n), []byte(block))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.Contains(block, "[daemon]"):
			daemon = cfg
		case pools == nil:
			pools = cfg
		}
	}
	if pools == nil || daemon == nil {
		t.Fatal("docs/autoscaling.md lacks the pools example or the daemon's complete file")
	}
	if len(pools.Pools) != 2 || pools.Pools[0].Effective(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)).IdleCount != 4 {
		t.Errorf("docs example: %+v", pools.Pools)
	}
	if err := daemon.DaemonReady("docs/autoscaling.md"); err != nil {
		t.Errorf("the daemon's example lacks: %v", err)
	}
	if env := daemon.Pools[0].TokenEnv(); env != "SHOAL_RUNNER_TOKEN_DOCKER" {
		t.Errorf("the daemon's example's token variable is %s, and the docs say SHOAL_RUNNER_TOKEN_DOCKER", env)
	}
}

func TestDaemonConfig(t *testing.T) {
	cfg, err := config.Parse("shoal.toml", []byte(`[gitlab]
url = "https://gitlab.example.com"
groups = ["acme"]
unreadable_limit = "2h"

[daemon]
listen = "127.0.0.1:9252"
ssh_keys = ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"]
ssh_identity = "/etc/shoal/id_ed25519"
private_network = true
shutdown_limit = "5h"

[[pool]]
name = "docker-large"
runner_id = 42
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.DaemonReady("shoal.toml"); err != nil {
		t.Errorf("a complete daemon config: %v", err)
	}
	if cfg.GitLab.URL != "https://gitlab.example.com" || !reflect.DeepEqual(cfg.GitLab.Groups, []string{"acme"}) ||
		cfg.Daemon.Listen != "127.0.0.1:9252" || !cfg.Daemon.PrivateNetwork || cfg.Daemon.StateDir != config.DefaultStateDir ||
		cfg.Daemon.ShutdownLimit != 5*time.Hour || cfg.GitLab.UnreadableLimit != 2*time.Hour {
		t.Errorf("parsed %+v %+v", cfg.GitLab, cfg.Daemon)
	}
	if got := cfg.Pools[0].TokenEnv(); got != "SHOAL_RUNNER_TOKEN_DOCKER_LARGE" {
		t.Errorf("default token variable %q", got)
	}

	// The simulator's configs lack all of it; the daemon says what, at once.
	bare, err := config.Parse("sim.toml", []byte("[[pool]]\nname = \"docker\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = bare.DaemonReady("sim.toml")
	var cerr *config.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("DaemonReady = %v, want a config.Error", err)
	}
	var keys []string
	for _, p := range cerr.Problems {
		keys = append(keys, p.Key)
	}
	want := []string{"gitlab.url", "gitlab.projects", "daemon.ssh_keys", "daemon.ssh_identity", "pool.runner_id"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("missing keys %q, want %q", keys, want)
	}
}

func TestMostInstances(t *testing.T) {
	cfg, err := config.Parse("shoal.toml", []byte(`
[[pool]]
name = "busy"
max_instances = 10
  [[pool.policy]]
  periods = ["* 9-17 * * mon-fri"]
  max_instances = 90
  [[pool.policy]]
  periods = ["* 0-5 * * *"]
  max_instances = 2

[[pool]]
name = "quiet"
max_instances = 10
  [[pool.policy]]
  periods = ["* 0-5 * * *"]
  max_instances = 2
  idle_count = 1
`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{90, 10} {
		if got := cfg.Pools[i].MostInstances(); got != want {
			t.Errorf("pool %s: MostInstances %d, want %d", cfg.Pools[i].Name, got, want)
		}
	}
}

// unreadable_limit = "0" turns the drain of a fleet blind to GitLab off; left
// out, the reconciler's default holds.
func TestUnreadableLimit(t *testing.T) {
	for _, tc := range []struct {
		line string
		want time.Duration
	}{{"", 0}, {`unreadable_limit = "0"`, -1}, {`unreadable_limit = "30m"`, 30 * time.Minute}} {
		cfg, err := config.Parse("shoal.toml", []byte("[gitlab]\n"+tc.line+"\n"))
		if err != nil || cfg.GitLab.UnreadableLimit != tc.want {
			t.Errorf("%q: %v, %v; want %v", tc.line, cfg.GitLab.UnreadableLimit, err, tc.want)
		}
	}
}
