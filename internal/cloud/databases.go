package cloud

import (
	"context"
	"fmt"
	"net/url"

	"github.com/digitalocean/godo"
)

func toConnection(c *godo.DatabaseConnection) Connection {
	if c == nil {
		return Connection{}
	}
	return Connection{URI: c.URI, Database: c.Database, Host: c.Host, Port: c.Port, User: c.User, Password: c.Password, SSL: c.SSL}
}

func toDatabase(g *godo.Database) Database {
	return Database{ID: g.ID, Name: g.Name, Engine: g.EngineSlug, Version: g.VersionSlug, Region: g.RegionSlug,
		Status: g.Status, Tags: g.Tags, Connection: toConnection(g.Connection),
		PrivateConnection: toConnection(g.PrivateConnection)}
}

func (d *DO) ListDatabases(ctx context.Context, tag string) ([]Database, error) {
	// godo's List has no tag filter; the API does, so ask for it directly.
	path := "v2/databases"
	if tag != "" {
		path += "?tag_name=" + url.QueryEscape(tag)
	}
	var root struct{ Databases []godo.Database }
	err := d.call(ctx, true, func() (*godo.Response, error) {
		req, err := d.c.NewRequest(ctx, "GET", path, nil)
		if err != nil {
			return nil, err
		}
		return d.c.Do(ctx, req, &root)
	})
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	out := make([]Database, len(root.Databases))
	for i := range root.Databases {
		out[i] = toDatabase(&root.Databases[i])
	}
	return out, nil
}

// GetDatabase returns a cluster with its connection pools.
func (d *DO) GetDatabase(ctx context.Context, id string) (Database, error) {
	var g *godo.Database
	err := d.call(ctx, true, func() (resp *godo.Response, err error) {
		g, resp, err = d.c.Databases.Get(ctx, id)
		return resp, err
	})
	if err != nil {
		return Database{}, fmt.Errorf("get database %s: %w", id, err)
	}
	db := toDatabase(g)
	var pools []godo.DatabasePool
	err = d.call(ctx, true, func() (resp *godo.Response, err error) {
		pools, resp, err = d.c.Databases.ListPools(ctx, id, nil)
		return resp, err
	})
	if err != nil {
		return Database{}, fmt.Errorf("list pools of database %s: %w", id, err)
	}
	for _, p := range pools {
		db.Pools = append(db.Pools, Pool{Name: p.Name, Mode: p.Mode, DB: p.Database, User: p.User, Size: p.Size,
			Connection: toConnection(p.Connection), PrivateConnection: toConnection(p.PrivateConnection)})
	}
	return db, nil
}

func (d *DO) DatabaseFirewall(ctx context.Context, id string) ([]FirewallRule, error) {
	var rules []godo.DatabaseFirewallRule
	err := d.call(ctx, true, func() (resp *godo.Response, err error) {
		rules, resp, err = d.c.Databases.GetFirewallRules(ctx, id)
		return resp, err
	})
	if err != nil {
		return nil, fmt.Errorf("get firewall of database %s: %w", id, err)
	}
	out := make([]FirewallRule, len(rules))
	for i, r := range rules {
		out[i] = FirewallRule{Type: r.Type, Value: r.Value}
	}
	return out, nil
}

// SetDatabaseFirewall replaces the cluster's trusted sources (a PUT: safe to repeat).
func (d *DO) SetDatabaseFirewall(ctx context.Context, id string, rules []FirewallRule) error {
	req := &godo.DatabaseUpdateFirewallRulesRequest{}
	for _, r := range rules {
		req.Rules = append(req.Rules, &godo.DatabaseFirewallRule{Type: r.Type, Value: r.Value})
	}
	err := d.call(ctx, true, func() (*godo.Response, error) { return d.c.Databases.UpdateFirewallRules(ctx, id, req) })
	if err != nil {
		return fmt.Errorf("set firewall of database %s: %w", id, err)
	}
	return nil
}
