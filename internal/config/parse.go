package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2/unstable"
	"github.com/robfig/cron/v3"
)

// Why go-toml's unstable parser rather than a decoder: strictness here means
// every unknown key, wrong type and bad value reported at once, each with its
// line. go-toml/v2 v2.4.3's AST gives every key's byte range (so its line);
// walking it ourselves we can keep going after the first problem. Its own
// strict Decoder (DisallowUnknownFields) lists unknown keys with positions but
// stops at the first type error, and BurntSushi/toml v1.6.0's MetaData names
// keys and types but keeps their positions private (and its decoder also stops
// at the first error).

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File string
	Line int // 1-based; 0 when the problem has no single line (a missing key)
	Key  string
	Msg  string
}

func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	if p.Key == "" {
		return fmt.Sprintf("%s: %s", loc, p.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, p.Key, p.Msg)
}

// Error is every problem found in one file.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d problem(s) in autoscaler config; fix them and retry:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// value is one TOML value with the line it sits on, copied out of the parser
// (whose nodes are reused from one expression to the next).
type value struct {
	line  int
	kind  unstable.Kind
	data  string
	items []value // arrays
	table *table  // inline tables
}

// entry is what one key holds in a table.
type entry struct {
	line   int
	val    *value   // key = value
	sub    *table   // [a.b] or dotted keys
	tables []*table // [[a]]
}

type table struct {
	line    int
	entries map[string]*entry
	order   []string
}

func newTable(line int) *table { return &table{line: line, entries: map[string]*entry{}} }

func (t *table) get(key string, line int) *entry {
	e, ok := t.entries[key]
	if !ok {
		e = &entry{line: line}
		t.entries[key] = e
		t.order = append(t.order, key)
	}
	return e
}

type parser struct {
	file     string
	p        unstable.Parser
	problems []Problem
}

func (ps *parser) add(line int, key, format string, args ...any) {
	ps.problems = append(ps.problems, Problem{File: ps.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (ps *parser) line(r unstable.Range) int {
	return ps.p.Shape(r).Start.Line
}

// Parse parses a configuration file's contents; name is used in messages.
func Parse(name string, data []byte) (*Config, error) {
	ps := &parser{file: name}
	root, ok := ps.tree(data)
	if !ok {
		return nil, &Error{Problems: ps.problems}
	}
	cfg := ps.decode(root)
	if len(ps.problems) > 0 {
		sort.SliceStable(ps.problems, func(i, j int) bool { return ps.problems[i].Line < ps.problems[j].Line })
		return nil, &Error{Problems: ps.problems}
	}
	return cfg, nil
}

// tree turns the document into tables of positioned values. A syntax error
// ends parsing (nothing after it can be trusted) and is the only problem.
func (ps *parser) tree(data []byte) (*table, bool) {
	root := newTable(1)
	cur := root
	ps.p.Reset(data)
	for ps.p.NextExpression() {
		expr := ps.p.Expression()
		switch expr.Kind {
		case unstable.KeyValue:
			ps.setKey(cur, expr)
		case unstable.Table, unstable.ArrayTable:
			keys, line := ps.keyParts(expr.Key())
			t := root
			for i, k := range keys {
				e := t.get(k, line)
				last := i == len(keys)-1
				switch {
				case last && expr.Kind == unstable.ArrayTable:
					if e.val != nil || e.sub != nil {
						ps.add(line, strings.Join(keys, "."), "already defined on line %d as a table or value", e.line)
						e = &entry{}
					}
					nt := newTable(line)
					e.tables = append(e.tables, nt)
					t = nt
				case len(e.tables) > 0:
					// [a.b] after [[a]] adds to a's last element, as TOML says.
					t = e.tables[len(e.tables)-1]
				default:
					if e.val != nil {
						ps.add(line, strings.Join(keys[:i+1], "."), "already defined on line %d as a value", e.line)
						e.val = nil
					}
					if e.sub == nil {
						e.sub = newTable(line)
					}
					t = e.sub
				}
			}
			cur = t
		}
	}
	if err := ps.p.Error(); err != nil {
		line := 0
		var perr *unstable.ParserError
		if errors.As(err, &perr) && len(perr.Highlight) > 0 {
			line = lineOf(data, perr.Highlight)
		}
		ps.add(line, "", "TOML syntax: %s", err.Error())
		return nil, false
	}
	return root, true
}

// lineOf finds the line of sub, a slice of data's backing array.
func lineOf(data, sub []byte) int {
	off := cap(data) - cap(sub)
	if off < 0 || off > len(data) {
		return 0
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

func (ps *parser) keyParts(it unstable.Iterator) ([]string, int) {
	var keys []string
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = ps.line(n.Raw)
		}
		keys = append(keys, string(n.Data))
	}
	return keys, line
}

func (ps *parser) setKey(t *table, kv *unstable.Node) {
	keys, line := ps.keyParts(kv.Key())
	for _, k := range keys[:len(keys)-1] {
		e := t.get(k, line)
		if e.val != nil {
			ps.add(line, k, "already defined on line %d as a value", e.line)
			e.val = nil
		}
		if e.sub == nil {
			e.sub = newTable(line)
		}
		t = e.sub
	}
	last := keys[len(keys)-1]
	if e, dup := t.entries[last]; dup {
		ps.add(line, strings.Join(keys, "."), "defined twice (first on line %d)", e.line)
		return
	}
	v := ps.value(kv.Value(), line)
	t.get(last, line).val = &v
}

func (ps *parser) value(n *unstable.Node, line int) value {
	v := value{line: line, kind: n.Kind, data: string(n.Data)}
	switch n.Kind {
	case unstable.Array:
		it := n.Children()
		for it.Next() {
			v.items = append(v.items, ps.value(it.Node(), line))
		}
	case unstable.InlineTable:
		v.table = newTable(line)
		it := n.Children()
		for it.Next() {
			ps.setKey(v.table, it.Node())
		}
	}
	return v
}

// decoding: a small schema walker that records every problem and goes on.

type fields struct {
	ps   *parser
	t    *table
	path string
	seen map[string]bool
}

func (ps *parser) fields(t *table, path string) *fields {
	return &fields{ps: ps, t: t, path: path, seen: map[string]bool{}}
}

func (f *fields) key(k string) string {
	if f.path == "" {
		return k
	}
	return f.path + "." + k
}

// val returns the plain value at k, if there is one.
func (f *fields) val(k string) *value {
	f.seen[k] = true
	e, ok := f.t.entries[k]
	if !ok {
		return nil
	}
	if e.val == nil {
		f.ps.add(e.line, f.key(k), "must be a value, not a table")
		return nil
	}
	return e.val
}

// unknown reports every key not looked at: misspellings, keys from another
// tool, keys in the wrong table.
func (f *fields) unknown(known []string) {
	for _, k := range f.t.order {
		if !f.seen[k] {
			f.ps.add(f.t.entries[k].line, f.key(k), "unknown key (known here: %s)", strings.Join(known, ", "))
		}
	}
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a number"
	case unstable.Bool:
		return "true or false"
	case unstable.Array:
		return "an array"
	case unstable.InlineTable:
		return "a table"
	default:
		return "a date/time"
	}
}

func (f *fields) str(k string, dst *string) (int, bool) {
	v := f.val(k)
	if v == nil {
		return 0, false
	}
	if v.kind != unstable.String {
		f.ps.add(v.line, f.key(k), "must be a string, not %s", kindName(v.kind))
		return v.line, false
	}
	*dst = v.data
	return v.line, true
}

func (f *fields) boolean(k string, dst *bool) (int, bool) {
	v := f.val(k)
	if v == nil {
		return 0, false
	}
	if v.kind != unstable.Bool {
		f.ps.add(v.line, f.key(k), "must be true or false, not %s", kindName(v.kind))
		return v.line, false
	}
	*dst = v.data == "true"
	return v.line, true
}

func (f *fields) integer(k string, min int, dst *int) (int, bool) {
	v := f.val(k)
	if v == nil {
		return 0, false
	}
	if v.kind != unstable.Integer {
		f.ps.add(v.line, f.key(k), "must be a whole number, not %s", kindName(v.kind))
		return v.line, false
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(v.data, "_", ""), 0, 32)
	if err != nil {
		f.ps.add(v.line, f.key(k), "%s is out of range", v.data)
		return v.line, false
	}
	if int(n) < min {
		f.ps.add(v.line, f.key(k), "must be at least %d, got %d", min, n)
		return v.line, false
	}
	*dst = int(n)
	return v.line, true
}

func (f *fields) number(k string, dst *float64) (int, bool) {
	v := f.val(k)
	if v == nil {
		return 0, false
	}
	if v.kind != unstable.Float && v.kind != unstable.Integer {
		f.ps.add(v.line, f.key(k), "must be a number, not %s", kindName(v.kind))
		return v.line, false
	}
	x, err := strconv.ParseFloat(strings.ReplaceAll(v.data, "_", ""), 64)
	if v.kind == unstable.Integer {
		var n int64
		n, err = strconv.ParseInt(strings.ReplaceAll(v.data, "_", ""), 0, 64)
		x = float64(n)
	}
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		f.ps.add(v.line, f.key(k), "%s is not a usable number", v.data)
		return v.line, false
	}
	*dst = x
	return v.line, true
}

func (f *fields) duration(k string, dst *time.Duration) (int, bool) {
	v := f.val(k)
	if v == nil {
		return 0, false
	}
	if v.kind != unstable.String {
		f.ps.add(v.line, f.key(k), "must be a duration string like \"90s\" or \"10m\", not %s", kindName(v.kind))
		return v.line, false
	}
	s, line := v.data, v.line
	d, err := time.ParseDuration(s)
	if err != nil {
		f.ps.add(line, f.key(k), "%q is not a duration (write it like \"90s\", \"10m\" or \"1h30m\")", s)
		return line, false
	}
	if d < 0 {
		f.ps.add(line, f.key(k), "must not be negative, got %s", s)
		return line, false
	}
	*dst = d
	return line, true
}

func (f *fields) strings(k string, dst *[]string) (int, bool) {
	v := f.val(k)
	if v == nil {
		return 0, false
	}
	if v.kind != unstable.Array {
		f.ps.add(v.line, f.key(k), "must be an array of strings, like [\"docker\"], not %s", kindName(v.kind))
		return v.line, false
	}
	out := make([]string, 0, len(v.items))
	for _, it := range v.items {
		if it.kind != unstable.String {
			f.ps.add(v.line, f.key(k), "must hold only strings, found %s", kindName(it.kind))
			return v.line, false
		}
		out = append(out, it.data)
	}
	*dst = out
	return v.line, true
}

// table returns the [k] table, if there is one.
func (f *fields) table(k string) *table {
	f.seen[k] = true
	e, ok := f.t.entries[k]
	if !ok {
		return nil
	}
	if e.sub != nil {
		return e.sub
	}
	if e.val != nil && e.val.table != nil {
		return e.val.table
	}
	f.ps.add(e.line, f.key(k), "must be a [%s] table", f.key(k))
	return nil
}

// tables returns the [[k]] tables (an array of inline tables is accepted too).
func (f *fields) tables(k string) []*table {
	f.seen[k] = true
	e, ok := f.t.entries[k]
	if !ok {
		return nil
	}
	if len(e.tables) > 0 {
		return e.tables
	}
	if e.val != nil && e.val.kind == unstable.Array {
		var out []*table
		for _, it := range e.val.items {
			if it.table == nil {
				f.ps.add(e.line, f.key(k), "must be written as [[%s]] tables", f.key(k))
				return nil
			}
			out = append(out, it.table)
		}
		return out
	}
	f.ps.add(e.line, f.key(k), "must be written as [[%s]] tables", f.key(k))
	return nil
}

var (
	globalKeys = []string{"reconcile_interval", "rate_budget", "billing_model", "gitlab", "daemon", "pool"}
	gitlabKeys = []string{"url", "projects", "groups", "jobs_api_per_minute", "unreadable_limit"}
	daemonKeys = []string{"listen", "ssh_keys", "ssh_identity", "state_dir", "private_network", "shutdown_limit"}
	poolKeys   = []string{"name", "tags", "run_untagged", "region", "size", "image", "capacity_per_instance",
		"min_instances", "max_instances", "idle_count", "idle_time", "scale_factor", "scale_factor_limit",
		"runner_id", "runner_token_env", "policy"}
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	periodKeys = []string{"periods", "timezone", "min_instances", "max_instances", "idle_count", "idle_time",
		"scale_factor", "scale_factor_limit"}

	// Pool names become Droplet names (shoal-<pool>-<random>, a hostname) and
	// tags (shoal-pool-<pool>), so they keep to what both allow.
	poolNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$`)
	slugRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

	cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
)

func (ps *parser) decode(root *table) *Config {
	cfg := Default()
	f := ps.fields(root, "")
	if line, ok := f.duration("reconcile_interval", &cfg.ReconcileInterval); ok && cfg.ReconcileInterval < time.Second {
		ps.add(line, "reconcile_interval", "must be at least 1s, got %s", cfg.ReconcileInterval)
	}
	if line, ok := f.number("rate_budget", &cfg.RateBudget); ok && (cfg.RateBudget <= 0 || cfg.RateBudget > 1) {
		ps.add(line, "rate_budget", "must be a share in (0, 1] of DigitalOcean's 250 requests/minute and 5,000/hour, got %g", cfg.RateBudget)
	}
	var billing string
	if line, ok := f.str("billing_model", &billing); ok {
		if b := BillingModel(billing); b.Valid() {
			cfg.Billing = b
		} else {
			ps.add(line, "billing_model", "must be %q or %q, got %q", BillingPerSecond, BillingHourly, billing)
		}
	}
	if t := f.table("gitlab"); t != nil {
		cfg.GitLab = ps.gitlab(t)
	}
	if t := f.table("daemon"); t != nil {
		ps.daemon(t, &cfg.Daemon)
	}
	names := map[string]int{}
	for _, t := range f.tables("pool") {
		p := ps.pool(t)
		if p.Name != "" {
			if first, dup := names[p.Name]; dup {
				ps.add(t.line, "pool.name", "pool %q is defined twice (first on line %d)", p.Name, first)
			}
			names[p.Name] = t.line
		}
		cfg.Pools = append(cfg.Pools, p)
	}
	f.unknown(globalKeys)
	return &cfg
}

func (ps *parser) pool(t *table) Pool {
	p := DefaultPool("")
	f := ps.fields(t, "pool")
	if line, ok := f.str("name", &p.Name); !ok && line == 0 {
		ps.add(t.line, "pool.name", "is required (a short name such as \"docker\")")
	} else if ok && !poolNameRE.MatchString(p.Name) {
		ps.add(line, "pool.name", "%q must be 1-30 lowercase letters, digits or dashes, not starting or ending with a dash (it becomes part of Droplet names and tags)", p.Name)
	}
	if line, ok := f.strings("tags", &p.Tags); ok {
		for _, tag := range p.Tags {
			if strings.TrimSpace(tag) == "" || strings.Contains(tag, ",") {
				ps.add(line, "pool.tags", "%q is not a usable runner tag", tag)
			}
		}
	}
	f.boolean("run_untagged", &p.RunUntagged)
	for _, s := range []struct {
		key string
		dst *string
	}{{"region", &p.Region}, {"size", &p.Size}, {"image", &p.Image}} {
		if line, ok := f.str(s.key, s.dst); ok && !slugRE.MatchString(*s.dst) {
			ps.add(line, "pool."+s.key, "%q is not a DigitalOcean slug (like \"nyc3\", \"s-2vcpu-4gb\", \"ubuntu-24-04-x64\")", *s.dst)
		}
	}
	f.integer("capacity_per_instance", 1, &p.CapacityPerInstance)
	set := ps.scaling(f, &p.Scaling)
	if p.MinInstances > p.MaxInstances && set["min_instances"] > 0 {
		ps.add(set["min_instances"], "pool.min_instances", "%d is more than max_instances (%d)", p.MinInstances, p.MaxInstances)
	} else if p.MinInstances > p.MaxInstances {
		ps.add(set["max_instances"], "pool.max_instances", "%d is less than min_instances (%d)", p.MaxInstances, p.MinInstances)
	}
	f.integer("runner_id", 1, &p.RunnerID)
	if line, ok := f.str("runner_token_env", &p.RunnerTokenEnv); ok && !envNameRE.MatchString(p.RunnerTokenEnv) {
		ps.add(line, "pool.runner_token_env", "%q is not an environment variable name", p.RunnerTokenEnv)
	}
	for _, pt := range f.tables("policy") {
		p.Periods = append(p.Periods, ps.period(pt))
	}
	f.unknown(poolKeys)
	return p
}

func (ps *parser) gitlab(t *table) GitLab {
	var g GitLab
	f := ps.fields(t, "gitlab")
	if line, ok := f.str("url", &g.URL); ok {
		if u, err := url.Parse(g.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			ps.add(line, "gitlab.url", "%q is not a GitLab address like \"https://gitlab.example.com\"", g.URL)
		}
	}
	f.strings("projects", &g.Projects)
	f.strings("groups", &g.Groups)
	f.integer("jobs_api_per_minute", 1, &g.JobsAPIPerMinute)
	if line, ok := f.duration("unreadable_limit", &g.UnreadableLimit); ok {
		switch {
		case g.UnreadableLimit == 0:
			g.UnreadableLimit = -1 // never
		case g.UnreadableLimit < 5*time.Minute:
			ps.add(line, "gitlab.unreadable_limit", "must be at least 5 minutes (or 0: never), got %s: a short GitLab outage must not drain the fleet", g.UnreadableLimit)
		}
	}
	f.unknown(gitlabKeys)
	return g
}

func (ps *parser) daemon(t *table, d *Daemon) {
	f := ps.fields(t, "daemon")
	f.str("listen", &d.Listen)
	f.strings("ssh_keys", &d.SSHKeys)
	f.str("ssh_identity", &d.SSHIdentity)
	f.str("state_dir", &d.StateDir)
	f.boolean("private_network", &d.PrivateNetwork)
	if line, ok := f.duration("shutdown_limit", &d.ShutdownLimit); ok && d.ShutdownLimit < time.Minute {
		ps.add(line, "daemon.shutdown_limit", "must be at least a minute, got %s: a graceful shutdown waits for the runner's jobs", d.ShutdownLimit)
	}
	f.unknown(daemonKeys)
}

// scaling reads the keys a pool and a period share; it returns the line of
// each key that was set and valid.
func (ps *parser) scaling(f *fields, s *Scaling) map[string]int {
	set := map[string]int{}
	mark := func(k string, line int, ok bool) {
		if ok {
			set[k] = line
		}
	}
	l, ok := f.integer("min_instances", 0, &s.MinInstances)
	mark("min_instances", l, ok)
	l, ok = f.integer("max_instances", 1, &s.MaxInstances)
	mark("max_instances", l, ok)
	l, ok = f.integer("idle_count", 0, &s.IdleCount)
	mark("idle_count", l, ok)
	l, ok = f.duration("idle_time", &s.IdleTime)
	mark("idle_time", l, ok)
	l, ok = f.number("scale_factor", &s.ScaleFactor)
	if ok && s.ScaleFactor < 0 {
		ps.add(l, f.key("scale_factor"), "must not be negative, got %g", s.ScaleFactor)
		ok = false
	}
	mark("scale_factor", l, ok)
	l, ok = f.integer("scale_factor_limit", 0, &s.ScaleFactorLimit)
	mark("scale_factor_limit", l, ok)
	return set
}

func (ps *parser) period(t *table) Period {
	per := Period{Timezone: time.UTC, Set: map[string]bool{}}
	f := ps.fields(t, "pool.policy")
	if line, ok := f.strings("periods", &per.Specs); ok {
		if len(per.Specs) == 0 {
			ps.add(line, "pool.policy.periods", "is empty: give at least one cron expression, like \"* 8-18 * * mon-fri\"")
		}
		for _, spec := range per.Specs {
			if s, err := parsePeriod(spec); err != nil {
				ps.add(line, "pool.policy.periods", "%q: %v", spec, err)
			} else {
				per.schedules = append(per.schedules, s)
			}
		}
	} else if line == 0 {
		ps.add(t.line, "pool.policy.periods", "is required (cron expressions such as \"* 8-18 * * mon-fri\")")
	}
	var tz string
	if line, ok := f.str("timezone", &tz); ok {
		loc, err := time.LoadLocation(tz)
		if err != nil || tz == "" || strings.EqualFold(tz, "local") {
			ps.add(line, "pool.policy.timezone", "%q is not an IANA timezone (like \"UTC\" or \"Europe/Berlin\")", tz)
		} else {
			per.Timezone = loc
		}
	}
	for k := range ps.scaling(f, &per.Overrides) {
		per.Set[k] = true
	}
	f.unknown(periodKeys)
	return per
}

// parsePeriod parses one cron expression of a period: five fields (minute hour
// day-of-month month day-of-week) or a descriptor such as @weekly, as GitLab
// Runner's [[runners.autoscaler.policy]] periods.
func parsePeriod(spec string) (*cron.SpecSchedule, error) {
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return nil, errors.New("set the period's timezone with the timezone key, not in the expression")
	}
	if strings.HasPrefix(spec, "@every") {
		return nil, errors.New("@every is an interval, not a period of time")
	}
	s, err := cronParser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("not a 5-field cron expression (minute hour day-of-month month day-of-week): %w", err)
	}
	ss, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, errors.New("not a cron expression")
	}
	return ss, nil
}
