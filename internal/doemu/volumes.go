package doemu

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"time"
)

const (
	maxVolumesPerDroplet = 15
	maxVolumeGiB         = 16 * 1024
)

var volumeNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,63}$`)

type volume struct {
	id, name, description string
	sizeGiB               int
	created               time.Time
	tags                  []string
	region                region
	fsType, fsLabel       string
	dropletIDs            []int
	pending               *action
}

type volumeJSON struct {
	ID              string   `json:"id"`
	DropletIDs      []int    `json:"droplet_ids"`
	Name            string   `json:"name"`
	Description     string   `json:"description"`
	SizeGigabytes   int      `json:"size_gigabytes"`
	CreatedAt       string   `json:"created_at"`
	Tags            []string `json:"tags"`
	Region          region   `json:"region"`
	FilesystemType  string   `json:"filesystem_type"`
	FilesystemLabel string   `json:"filesystem_label"`
}

func (v *volume) json() volumeJSON {
	return volumeJSON{ID: v.id, DropletIDs: nonNil(v.dropletIDs), Name: v.name, Description: v.description,
		SizeGigabytes: v.sizeGiB, CreatedAt: v.created.UTC().Format(time.RFC3339), Tags: nonNil(v.tags),
		Region: v.region, FilesystemType: v.fsType, FilesystemLabel: v.fsLabel}
}

type volumeCreateRequest struct {
	SizeGigabytes   int      `json:"size_gigabytes"`
	Name            string   `json:"name"`
	Description     string   `json:"description"`
	Region          string   `json:"region"`
	SnapshotID      string   `json:"snapshot_id"`
	FilesystemType  string   `json:"filesystem_type"`
	FilesystemLabel string   `json:"filesystem_label"`
	Tags            []string `json:"tags"`
}

func (s *Server) createVolume(w http.ResponseWriter, r *http.Request) {
	var req volumeCreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !volumeNameRE.MatchString(req.Name) {
		unprocessable(w, "Volume name must begin with a letter and contain only lowercase letters, numbers and '-', up to 64 characters.")
		return
	}
	if req.SizeGigabytes < 1 || req.SizeGigabytes > maxVolumeGiB {
		unprocessable(w, fmt.Sprintf("size_gigabytes must be between 1 and %d.", maxVolumeGiB))
		return
	}
	reg, ok := regionBySlug(req.Region)
	if !ok {
		unprocessable(w, "You specified an invalid region for the volume.")
		return
	}
	maxLabel := map[string]int{"": 0, "ext4": 16, "xfs": 12}
	limit, ok := maxLabel[req.FilesystemType]
	if !ok {
		unprocessable(w, "filesystem_type must be ext4 or xfs.")
		return
	}
	if len(req.FilesystemLabel) > limit {
		unprocessable(w, fmt.Sprintf("filesystem_label may be at most %d characters for %s (and needs a filesystem_type).", limit, req.FilesystemType))
		return
	}
	if !validTags(req.Tags) {
		unprocessable(w, "Tag names may contain letters, numbers, colons, dashes and underscores, up to 255 characters.")
		return
	}
	if req.SnapshotID != "" {
		unprocessable(w, "Creating volumes from snapshots is not supported by this emulator.")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.volumeByName(req.Name, reg.Slug) != nil {
		conflict(w, "already exists")
		return
	}
	if len(s.volumes) >= s.opts.VolumeLimit {
		unprocessable(w, fmt.Sprintf("creating this volume will exceed your volume limit of %d", s.opts.VolumeLimit))
		return
	}
	v := &volume{id: s.newUUID(), name: req.Name, description: req.Description, sizeGiB: req.SizeGigabytes,
		created: s.clock.Now(), tags: slices.Clone(req.Tags), region: reg, fsType: req.FilesystemType,
		fsLabel: req.FilesystemLabel}
	s.volumes[v.id] = v
	s.volumeOrder = append(s.volumeOrder, v.id)
	writeJSON(w, http.StatusCreated, map[string]any{"volume": v.json()})
}

// volumeByName finds a volume by name in a region. Call with s.mu held.
func (s *Server) volumeByName(name, regionSlug string) *volume {
	for _, id := range s.volumeOrder {
		if v := s.volumes[id]; v.name == name && v.region.Slug == regionSlug {
			return v
		}
	}
	return nil
}

func (s *Server) listVolumes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name, reg := q.Get("name"), q.Get("region")
	s.mu.Lock()
	out := []volumeJSON{}
	for _, id := range s.volumeOrder {
		v := s.volumes[id]
		if (name == "" || v.name == name) && (reg == "" || v.region.Slug == reg) {
			out = append(out, v.json())
		}
	}
	s.mu.Unlock()
	writePage(w, r, "volumes", out)
}

// volumeFromPath finds the volume named by {volume_id}, answering 404 itself. Call with s.mu held.
func (s *Server) volumeFromPath(w http.ResponseWriter, r *http.Request) *volume {
	v := s.volumes[r.PathValue("volume_id")]
	if v == nil {
		notFound(w)
	}
	return v
}

func (s *Server) getVolume(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.volumeFromPath(w, r); v != nil {
		writeJSON(w, http.StatusOK, map[string]any{"volume": v.json()})
	}
}

func (s *Server) deleteVolume(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.volumeFromPath(w, r); v != nil {
		s.removeVolume(w, r, v)
	}
}

func (s *Server) deleteVolumeByName(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("name") == "" || q.Get("region") == "" {
		badRequest(w, "name and region are required to delete a volume by name.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumeByName(q.Get("name"), q.Get("region"))
	if v == nil {
		notFound(w)
		return
	}
	s.removeVolume(w, r, v)
}

// removeVolume deletes a volume unless it is attached. Call with s.mu held.
func (s *Server) removeVolume(w http.ResponseWriter, r *http.Request, v *volume) {
	if len(v.dropletIDs) > 0 || v.pending != nil {
		conflict(w, "attached volume can not be deleted")
		return
	}
	delete(s.volumes, v.id)
	s.volumeOrder = slices.DeleteFunc(s.volumeOrder, func(id string) bool { return id == v.id })
	w.WriteHeader(http.StatusNoContent)
}

type volumeActionRequest struct {
	Type          string   `json:"type"`
	DropletID     int      `json:"droplet_id"`
	Region        string   `json:"region"`
	SizeGigabytes int      `json:"size_gigabytes"`
	VolumeName    string   `json:"volume_name"`
	Tags          []string `json:"tags"`
}

func (s *Server) postVolumeAction(w http.ResponseWriter, r *http.Request) {
	var req volumeActionRequest
	if !decodeBody(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumeFromPath(w, r)
	if v == nil {
		return
	}
	s.volumeAction(w, r, v, req)
}

func (s *Server) postVolumeActionByName(w http.ResponseWriter, r *http.Request) {
	var req volumeActionRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.VolumeName == "" || req.Region == "" {
		unprocessable(w, "volume_name and region are required to act on a volume by name.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumeByName(req.VolumeName, req.Region)
	if v == nil {
		notFound(w)
		return
	}
	s.volumeAction(w, r, v, req)
}

// volumeAction validates and starts attach, detach or resize. Call with s.mu held.
func (s *Server) volumeAction(w http.ResponseWriter, r *http.Request, v *volume, req volumeActionRequest) {
	if req.Region != "" && req.Region != v.region.Slug {
		unprocessable(w, "The volume is not in region "+req.Region+".")
		return
	}
	delay := s.opts.ActionDelay.sample(s.rng)
	var a *action
	switch req.Type {
	case "attach", "detach":
		d := s.droplets[req.DropletID]
		if d == nil {
			if req.DropletID == 0 {
				unprocessable(w, "droplet_id is required.")
			} else {
				notFound(w)
			}
			return
		}
		if req.Type == "attach" {
			switch {
			case d.region.Slug != v.region.Slug:
				unprocessable(w, "Droplet and volume must be in the same region.")
				return
			case len(v.dropletIDs) > 0:
				unprocessable(w, "This volume is already attached to a Droplet.")
				return
			case len(d.volumeIDs) >= maxVolumesPerDroplet:
				unprocessable(w, fmt.Sprintf("A Droplet can have at most %d volumes attached.", maxVolumesPerDroplet))
				return
			}
		} else if !slices.Contains(v.dropletIDs, d.id) {
			unprocessable(w, "Attachment not found")
			return
		}
		if d.pending != nil || v.pending != nil {
			unprocessable(w, "Droplet already has a pending event.")
			return
		}
		attach := req.Type == "attach"
		a = s.startAction(d.id, "volume", req.Type, v.region, delay, func(a *action) {
			v.pending = nil
			if s.droplets[d.id] == nil { // the Droplet was destroyed meanwhile
				a.Status = "errored"
			}
			if a.Status != "completed" {
				return
			}
			if attach {
				v.dropletIDs = []int{d.id}
				d.volumeIDs = append(d.volumeIDs, v.id)
			} else {
				v.dropletIDs = slices.DeleteFunc(v.dropletIDs, func(id int) bool { return id == d.id })
				d.volumeIDs = slices.DeleteFunc(d.volumeIDs, func(id string) bool { return id == v.id })
			}
		})
		d.pending = a
	case "resize":
		switch {
		case req.SizeGigabytes <= v.sizeGiB:
			unprocessable(w, "A volume can only be resized to a larger size.")
			return
		case req.SizeGigabytes > maxVolumeGiB:
			unprocessable(w, fmt.Sprintf("size_gigabytes must be at most %d.", maxVolumeGiB))
			return
		case v.pending != nil:
			unprocessable(w, "Volume already has a pending event.")
			return
		}
		newSize := req.SizeGigabytes
		a = s.startAction(0, "volume", "resize", v.region, delay, func(a *action) {
			v.pending = nil
			if a.Status == "completed" {
				v.sizeGiB = newSize
			}
		})
	default:
		unprocessable(w, fmt.Sprintf("%q is not a volume action type: use attach, detach or resize.", req.Type))
		return
	}
	a.volumeID = v.id
	v.pending = a
	writeJSON(w, http.StatusAccepted, map[string]any{"action": a.json()})
}

func (s *Server) listVolumeActions(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	v := s.volumeFromPath(w, r)
	if v == nil {
		s.mu.Unlock()
		return
	}
	list := s.actionsWhere(func(a *action) bool { return a.volumeID == v.id })
	s.mu.Unlock()
	writePage(w, r, "actions", list)
}

func (s *Server) getVolumeAction(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumeFromPath(w, r)
	if v == nil {
		return
	}
	a := s.actionFromPath(w, r)
	if a == nil {
		return
	}
	if a.volumeID != v.id {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"action": a.json()})
}
