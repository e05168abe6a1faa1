package doemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const maxUserData = 64 * 1024

type droplet struct {
	id         int
	name       string
	region     region
	size       size
	image      image
	status     string // new, active, off
	created    time.Time
	tags       []string
	userData   string
	sshKeys    []int
	vpcUUID    string
	monitoring bool
	publicIP   string
	privateIP  string
	volumeIDs  []string
	pending    *action // DigitalOcean runs one action at a time per Droplet
}

type networkV4 struct {
	IPAddress string `json:"ip_address"`
	Netmask   string `json:"netmask"`
	Gateway   string `json:"gateway"`
	Type      string `json:"type"`
}

type dropletJSON struct {
	ID               int            `json:"id"`
	Name             string         `json:"name"`
	Memory           int            `json:"memory"`
	Vcpus            int            `json:"vcpus"`
	Disk             int            `json:"disk"`
	DiskInfo         []diskInfo     `json:"disk_info"`
	Locked           bool           `json:"locked"`
	Status           string         `json:"status"`
	Kernel           *struct{}      `json:"kernel"`
	CreatedAt        string         `json:"created_at"`
	Features         []string       `json:"features"`
	BackupIDs        []int          `json:"backup_ids"`
	NextBackupWindow struct{}       `json:"next_backup_window"` // required, not nullable, in the spec
	SnapshotIDs      []int          `json:"snapshot_ids"`
	Image            image          `json:"image"`
	VolumeIDs        []string       `json:"volume_ids"`
	Size             size           `json:"size"`
	SizeSlug         string         `json:"size_slug"`
	Networks         map[string]any `json:"networks"`
	Region           region         `json:"region"`
	Tags             []string       `json:"tags"`
	VPCUUID          string         `json:"vpc_uuid,omitempty"`
}

func (d *droplet) json() dropletJSON {
	v4 := []networkV4{}
	if d.status != "new" { // addresses appear once the Droplet is up, as on DigitalOcean
		v4 = append(v4,
			networkV4{IPAddress: d.privateIP, Netmask: "255.255.240.0", Gateway: "10.10.0.1", Type: "private"},
			networkV4{IPAddress: d.publicIP, Netmask: "255.255.240.0", Gateway: gatewayOf(d.publicIP), Type: "public"})
	}
	features := []string{"droplet_agent", "private_networking"}
	if d.monitoring {
		features = append(features, "monitoring")
	}
	return dropletJSON{
		ID: d.id, Name: d.name, Memory: d.size.Memory, Vcpus: d.size.Vcpus, Disk: d.size.Disk,
		DiskInfo: d.size.DiskInfo, Locked: false, Status: d.status,
		CreatedAt: d.created.UTC().Format(time.RFC3339), Features: features,
		BackupIDs: []int{}, SnapshotIDs: []int{}, Image: d.image,
		VolumeIDs: nonNil(d.volumeIDs), Size: d.size, SizeSlug: d.size.Slug,
		Networks: map[string]any{"v4": v4, "v6": []any{}}, Region: d.region,
		Tags: nonNil(d.tags), VPCUUID: d.vpcUUID,
	}
}

func gatewayOf(ip string) string {
	i := strings.LastIndexByte(ip, '.')
	return ip[:i] + ".1"
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

type dropletCreateRequest struct {
	Name       string            `json:"name"`
	Names      []string          `json:"names"`
	Region     string            `json:"region"`
	Size       string            `json:"size"`
	Image      json.RawMessage   `json:"image"`
	SSHKeys    []json.RawMessage `json:"ssh_keys"`
	Backups    bool              `json:"backups"`
	IPv6       bool              `json:"ipv6"`
	Monitoring bool              `json:"monitoring"`
	UserData   string            `json:"user_data"`
	Tags       []string          `json:"tags"`
	VPCUUID    string            `json:"vpc_uuid"`
}

var (
	hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,253}[a-zA-Z0-9])?$`)
	tagRE      = regexp.MustCompile(`^[a-zA-Z0-9_:\-]{1,255}$`)
	uuidRE     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// scalarRef turns a JSON string or number (an image or SSH key given by slug,
// fingerprint or ID) into a string.
func scalarRef(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s, true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if _, err := n.Int64(); err == nil {
			return n.String(), true
		}
	}
	return "", false
}

func validTags(tags []string) bool {
	for _, t := range tags {
		if !tagRE.MatchString(t) {
			return false
		}
	}
	return true
}

func (s *Server) createDroplets(w http.ResponseWriter, r *http.Request) {
	var req dropletCreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	names := req.Names
	multi := len(names) > 0
	switch {
	case req.Name != "" && multi:
		unprocessable(w, "You may specify either name or names, not both.")
		return
	case !multi && req.Name == "":
		unprocessable(w, "Name is required.")
		return
	case len(names) > 10:
		unprocessable(w, "You may only create up to 10 Droplets at a time.")
		return
	case !multi:
		names = []string{req.Name}
	}
	for _, n := range names {
		if !hostnameRE.MatchString(n) {
			unprocessable(w, fmt.Sprintf("Name %q is invalid: only valid hostname characters are allowed (a-z, A-Z, 0-9, . and -).", n))
			return
		}
	}
	reg, ok := regionBySlug(req.Region)
	if !ok {
		unprocessable(w, "You specified an invalid region for Droplet creation.")
		return
	}
	sz, ok := sizeBySlug(req.Size)
	if !ok {
		unprocessable(w, "You specified an invalid size for Droplet creation.")
		return
	}
	if len(req.UserData) > maxUserData {
		unprocessable(w, "user_data must be 64 KiB or less.")
		return
	}
	if !validTags(req.Tags) {
		unprocessable(w, "Tag names may contain letters, numbers, colons, dashes and underscores, up to 255 characters.")
		return
	}
	if req.VPCUUID != "" && !uuidRE.MatchString(req.VPCUUID) {
		unprocessable(w, "vpc_uuid is not a valid UUID.")
		return
	}
	imgRef, ok := scalarRef(req.Image)
	if !ok {
		unprocessable(w, "You specified an invalid image for Droplet creation.")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.findImage(imgRef)
	if !ok || !slices.Contains(img.Regions, reg.Slug) {
		unprocessable(w, "You specified an invalid image for Droplet creation.")
		return
	}
	var keyIDs []int
	for _, raw := range req.SSHKeys {
		ref, _ := scalarRef(raw)
		k := s.findKey(ref)
		if k == nil {
			unprocessable(w, fmt.Sprintf("ssh_keys: no SSH key %s on this account.", raw))
			return
		}
		keyIDs = append(keyIDs, k.ID)
	}
	if len(s.droplets)+len(names) > s.opts.DropletLimit {
		unprocessable(w, fmt.Sprintf("creating this/these droplet(s) will exceed your droplet limit of %d", s.opts.DropletLimit))
		return
	}

	now := s.clock.Now()
	made := make([]dropletJSON, 0, len(names))
	var acts []actionLink
	for _, name := range names {
		d := &droplet{
			id: s.newID(), name: name, region: reg, size: sz, image: img, status: "new", created: now,
			tags: slices.Clone(req.Tags), userData: req.UserData, sshKeys: keyIDs, monitoring: req.Monitoring,
			vpcUUID: req.VPCUUID,
		}
		if d.vpcUUID == "" {
			d.vpcUUID = s.defaultVPC(reg.Slug)
		}
		d.publicIP, d.privateIP = s.newAddresses()
		s.droplets[d.id] = d
		s.dropletOrder = append(s.dropletOrder, d.id)
		s.ledger.start(d.id, sz, now)
		a := s.startAction(d.id, "droplet", "create", reg, s.opts.BootDelay.sample(s.rng), func(a *action) {
			if a.Status == "completed" && s.droplets[d.id] == d {
				d.status = "active"
				s.note("active", d)
			}
		})
		d.pending = a
		s.note("created", d)
		made = append(made, d.json())
		acts = append(acts, actionLink{ID: a.ID, Rel: "create", HREF: s.actionURL(r, a.ID)})
	}
	if s.chance(s.opts.Faults.LostCreateRate) {
		s.stats.InjectedFaults++
		writeError(w, http.StatusInternalServerError, "server_error", "Server was unable to give you a response.")
		return
	}
	if multi {
		writeJSON(w, http.StatusAccepted, map[string]any{"droplets": made, "links": links{Actions: acts}})
	} else {
		writeJSON(w, http.StatusAccepted, map[string]any{"droplet": made[0], "links": links{Actions: acts}})
	}
}

// newAddresses gives a Droplet a public address in TEST-NET-3 (documentation
// space, never routed) and a private one in the region's VPC range. Call with s.mu held.
func (s *Server) newAddresses() (public, private string) {
	n := s.nextID
	return fmt.Sprintf("203.0.113.%d", 1+n%254), fmt.Sprintf("10.10.%d.%d", (n/254)%256, 2+n%253)
}

// defaultVPC returns the region's default VPC UUID, stable for the emulator's life. Call with s.mu held.
func (s *Server) defaultVPC(regionSlug string) string {
	if s.vpcs == nil {
		s.vpcs = map[string]string{}
	}
	if id, ok := s.vpcs[regionSlug]; ok {
		return id
	}
	id := s.newUUID()
	s.vpcs[regionSlug] = id
	return id
}

func (s *Server) listDroplets(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tag, name := q.Get("tag_name"), q.Get("name")
	if tag != "" && name != "" {
		unprocessable(w, "You may filter by tag_name or by name, not both.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	matched := make([]*droplet, 0, len(s.dropletOrder))
	for _, id := range s.dropletOrder {
		d := s.droplets[id]
		if now.Sub(d.created) < s.opts.Faults.ListLag {
			continue
		}
		if (tag == "" || slices.Contains(d.tags, tag)) && (name == "" || d.name == name) {
			matched = append(matched, d)
		}
	}
	p, ok := paginate(w, r, len(matched))
	if !ok {
		return
	}
	out := make([]dropletJSON, 0, p.end-p.start)
	for _, d := range matched[p.start:p.end] {
		out = append(out, d.json())
	}
	writeJSON(w, http.StatusOK, map[string]any{"droplets": out, "links": p.links, "meta": p.meta})
}

// dropletFromPath finds the Droplet named by the {droplet_id} path value,
// answering 404 itself when there is none. Call with s.mu held.
func (s *Server) dropletFromPath(w http.ResponseWriter, r *http.Request) *droplet {
	id, err := strconv.Atoi(r.PathValue("droplet_id"))
	d := s.droplets[id]
	if err != nil || d == nil {
		notFound(w)
		return nil
	}
	return d
}

func (s *Server) getDroplet(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.dropletFromPath(w, r); d != nil {
		writeJSON(w, http.StatusOK, map[string]any{"droplet": d.json()})
	}
}

func (s *Server) deleteDroplet(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.dropletFromPath(w, r); d != nil {
		s.destroy(d)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) deleteDropletsByTag(w http.ResponseWriter, r *http.Request) {
	tag := r.URL.Query().Get("tag_name")
	if tag == "" {
		badRequest(w, "tag_name is required to delete Droplets by tag.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range slices.Clone(s.dropletOrder) {
		if d := s.droplets[id]; slices.Contains(d.tags, tag) {
			s.destroy(d)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// destroy removes a Droplet, ends its billing and frees its volumes. Call with s.mu held.
func (s *Server) destroy(d *droplet) {
	s.note("deleted", d)
	delete(s.droplets, d.id)
	s.dropletOrder = slices.DeleteFunc(s.dropletOrder, func(id int) bool { return id == d.id })
	s.ledger.stop(d.id, s.clock.Now())
	for _, vid := range d.volumeIDs {
		if v := s.volumes[vid]; v != nil {
			v.dropletIDs = slices.DeleteFunc(v.dropletIDs, func(id int) bool { return id == d.id })
		}
	}
}

type dropletActionRequest struct {
	Type string `json:"type"`
}

var dropletActionTypes = map[string]string{ // action type → status once it completes
	"power_off": "off", "shutdown": "off", "power_on": "active", "reboot": "active", "power_cycle": "active",
}

func (s *Server) postDropletAction(w http.ResponseWriter, r *http.Request) {
	var req dropletActionRequest
	if !decodeBody(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dropletFromPath(w, r)
	if d == nil {
		return
	}
	next, ok := dropletActionTypes[req.Type]
	if !ok {
		unprocessable(w, fmt.Sprintf("%q is not a supported Droplet action type.", req.Type))
		return
	}
	if d.pending != nil {
		unprocessable(w, "Droplet already has a pending event.")
		return
	}
	var until func() bool // a graceful shutdown lasts as long as the guest takes
	if req.Type == "shutdown" && s.opts.ShutdownDone != nil {
		until = func() bool { return s.opts.ShutdownDone(d.id) }
	}
	d.pending = s.startActionUntil(d.id, "droplet", req.Type, d.region, s.opts.ActionDelay.sample(s.rng), until, func(a *action) {
		if a.Status == "completed" && s.droplets[d.id] == d {
			d.status = next
			s.note(req.Type, d)
		}
	})
	writeJSON(w, http.StatusCreated, map[string]any{"action": d.pending.json()})
}

func (s *Server) listDropletActions(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	d := s.dropletFromPath(w, r)
	if d == nil {
		s.mu.Unlock()
		return
	}
	list := s.actionsWhere(func(a *action) bool { return a.resourceType == "droplet" && a.resourceID == d.id })
	s.mu.Unlock()
	writePage(w, r, "actions", list)
}

func (s *Server) getDropletAction(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dropletFromPath(w, r)
	if d == nil {
		return
	}
	a := s.actionFromPath(w, r)
	if a == nil {
		return
	}
	if a.resourceType != "droplet" || a.resourceID != d.id {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"action": a.json()})
}
