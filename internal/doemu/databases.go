package doemu

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// DatabaseSeed describes a managed database cluster the emulator starts with.
// Host and Port may point at a real PostgreSQL server for end-to-end tests.
type DatabaseSeed struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Engine      string         `json:"engine"`
	Version     string         `json:"version"`
	Region      string         `json:"region"`
	Size        string         `json:"size"`
	NumNodes    int            `json:"num_nodes"`
	Tags        []string       `json:"tags"`
	Database    string         `json:"database"`
	User        string         `json:"user"`
	Password    string         `json:"password"`
	Host        string         `json:"host"`
	PrivateHost string         `json:"private_host"`
	Port        int            `json:"port"`
	Pools       []PoolSeed     `json:"pools"`
	Firewall    []FirewallRule `json:"firewall"`
}

// PoolSeed is a PgBouncer connection pool of a seeded cluster.
type PoolSeed struct {
	Name string `json:"name"`
	Mode string `json:"mode"`
	Size int    `json:"size"`
	DB   string `json:"db"`
	User string `json:"user"`
}

// FirewallRule is a trusted source of a database cluster.
type FirewallRule struct {
	UUID        string `json:"uuid,omitempty"`
	ClusterUUID string `json:"cluster_uuid,omitempty"`
	Type        string `json:"type"`
	Value       string `json:"value"`
	CreatedAt   string `json:"created_at,omitempty"`
	Description string `json:"description,omitempty"`
}

type connection struct {
	URI      string `json:"uri"`
	Database string `json:"database"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	User     string `json:"user"`
	Password string `json:"password"`
	SSL      bool   `json:"ssl"`
}

type database struct {
	seed    DatabaseSeed
	created time.Time
	rules   []FirewallRule
}

func pgConnection(host string, port int, user, password, db string) connection {
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(user, password), Host: host + ":" + strconv.Itoa(port),
		Path: "/" + db, RawQuery: "sslmode=require"}
	return connection{URI: u.String(), Database: db, Host: host, Port: port, User: user, Password: password, SSL: true}
}

// addDatabase fills a seed's defaults and stores it. Call before serving (from New).
func (s *Server) addDatabase(seed DatabaseSeed) error {
	if seed.Name == "" {
		return fmt.Errorf("seeded database needs a name")
	}
	if seed.Engine == "" {
		seed.Engine = "pg"
	}
	if seed.Engine != "pg" {
		return fmt.Errorf("seeded database %s: only engine pg is emulated, not %q", seed.Name, seed.Engine)
	}
	if _, ok := regionBySlug(seed.Region); !ok {
		return fmt.Errorf("seeded database %s: unknown region %q (use a slug such as nyc3)", seed.Name, seed.Region)
	}
	if seed.ID == "" {
		seed.ID = s.newUUID()
	}
	if _, dup := s.databases[seed.ID]; dup {
		return fmt.Errorf("seeded database %s: id %s is used twice", seed.Name, seed.ID)
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&seed.Version, "16")
	def(&seed.Size, "db-s-1vcpu-1gb")
	def(&seed.Database, "defaultdb")
	def(&seed.User, "doadmin")
	def(&seed.Password, "AVNS_"+s.newUUID()[:20])
	def(&seed.Host, fmt.Sprintf("%s-do-user-1-0.f.db.ondigitalocean.com", seed.Name))
	def(&seed.PrivateHost, "private-"+seed.Host)
	if seed.Port == 0 {
		seed.Port = 25060
	}
	if seed.NumNodes == 0 {
		seed.NumNodes = 1
	}
	db := &database{seed: seed, created: s.clock.Now()}
	for _, rule := range seed.Firewall {
		db.rules = append(db.rules, s.newRule(seed.ID, rule))
	}
	s.databases[seed.ID] = db
	s.databaseOrder = append(s.databaseOrder, seed.ID)
	return nil
}

// newRule completes a firewall rule with its IDs. Call with s.mu held.
func (s *Server) newRule(cluster string, r FirewallRule) FirewallRule {
	r.UUID, r.ClusterUUID, r.CreatedAt = s.newUUID(), cluster, s.clock.Now().UTC().Format(time.RFC3339)
	return r
}

func (db *database) json() map[string]any {
	sd := db.seed
	return map[string]any{
		"id": sd.ID, "name": sd.Name, "engine": sd.Engine, "version": sd.Version, "num_nodes": sd.NumNodes,
		"size": sd.Size, "region": sd.Region, "status": "online", "created_at": db.created.UTC().Format(time.RFC3339),
		"tags": nonNil(sd.Tags), "db_names": []string{sd.Database},
		"connection":         pgConnection(sd.Host, sd.Port, sd.User, sd.Password, sd.Database),
		"private_connection": pgConnection(sd.PrivateHost, sd.Port, sd.User, sd.Password, sd.Database),
		"users":              []map[string]string{{"name": sd.User, "role": "primary", "password": sd.Password}},
		"maintenance_window": map[string]any{"day": "tuesday", "hour": "08:00:00", "pending": false},
		"rules":              nonNil(db.rules),
		"storage_size_mib":   10240,
	}
}

func (db *database) pool(p PoolSeed) map[string]any {
	sd := db.seed
	user := p.User
	if user == "" {
		user = sd.User
	}
	pgbouncer := sd.Port + 1 // DigitalOcean serves pools on the port after the cluster's
	return map[string]any{
		"name": p.Name, "mode": p.Mode, "size": p.Size, "db": p.DB, "user": user,
		"connection":         pgConnection(sd.Host, pgbouncer, user, sd.Password, p.Name),
		"private_connection": pgConnection(sd.PrivateHost, pgbouncer, user, sd.Password, p.Name),
	}
}

func (s *Server) listDatabases(w http.ResponseWriter, r *http.Request) {
	tag := r.URL.Query().Get("tag_name")
	s.mu.Lock()
	out := []map[string]any{}
	for _, id := range s.databaseOrder {
		if db := s.databases[id]; tag == "" || slices.Contains(db.seed.Tags, tag) {
			out = append(out, db.json())
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"databases": out})
}

// databaseFromPath finds the cluster named by {database_cluster_uuid}, answering 404 itself. Call with s.mu held.
func (s *Server) databaseFromPath(w http.ResponseWriter, r *http.Request) *database {
	db := s.databases[r.PathValue("database_cluster_uuid")]
	if db == nil {
		notFound(w)
	}
	return db
}

func (s *Server) getDatabase(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if db := s.databaseFromPath(w, r); db != nil {
		writeJSON(w, http.StatusOK, map[string]any{"database": db.json()})
	}
}

func (s *Server) getDatabaseCA(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if db := s.databaseFromPath(w, r); db != nil {
		pem := "-----BEGIN CERTIFICATE-----\nshoal emulator CA for " + db.seed.Name + "\n-----END CERTIFICATE-----\n"
		writeJSON(w, http.StatusOK, map[string]any{"ca": map[string]string{
			"certificate": base64.StdEncoding.EncodeToString([]byte(pem))}})
	}
}

func (s *Server) listPools(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	db := s.databaseFromPath(w, r)
	if db == nil {
		return
	}
	out := []map[string]any{}
	for _, p := range db.seed.Pools {
		out = append(out, db.pool(p))
	}
	writeJSON(w, http.StatusOK, map[string]any{"pools": out})
}

func (s *Server) getPool(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	db := s.databaseFromPath(w, r)
	if db == nil {
		return
	}
	i := slices.IndexFunc(db.seed.Pools, func(p PoolSeed) bool { return p.Name == r.PathValue("pool_name") })
	if i < 0 {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"pool": db.pool(db.seed.Pools[i])})
}

func (s *Server) getFirewall(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if db := s.databaseFromPath(w, r); db != nil {
		writeJSON(w, http.StatusOK, map[string]any{"rules": nonNil(db.rules)})
	}
}

var firewallTypes = []string{"droplet", "k8s", "ip_addr", "tag", "app"}

func (s *Server) putFirewall(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Rules []FirewallRule `json:"rules"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	for _, rule := range req.Rules {
		if !slices.Contains(firewallTypes, rule.Type) || rule.Value == "" {
			unprocessable(w, fmt.Sprintf("invalid rule: type must be one of %v and value must not be empty", firewallTypes))
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	db := s.databaseFromPath(w, r)
	if db == nil {
		return
	}
	db.rules = db.rules[:0:0]
	for _, rule := range req.Rules {
		db.rules = append(db.rules, s.newRule(db.seed.ID, rule))
	}
	w.WriteHeader(http.StatusNoContent)
}
