package doemu

import (
	"net/http"
	"slices"
	"strconv"
	"time"
)

// The catalog: DigitalOcean's region, size and image slugs as their API lists them.

type region struct {
	Name      string   `json:"name"`
	Slug      string   `json:"slug"`
	Features  []string `json:"features"`
	Available bool     `json:"available"`
	Sizes     []string `json:"sizes"`
}

type diskInfo struct {
	Type string `json:"type"`
	Size struct {
		Amount int    `json:"amount"`
		Unit   string `json:"unit"`
	} `json:"size"`
}

type size struct {
	Slug         string     `json:"slug"`
	Memory       int        `json:"memory"`
	Vcpus        int        `json:"vcpus"`
	Disk         int        `json:"disk"`
	Transfer     float64    `json:"transfer"`
	PriceMonthly float64    `json:"price_monthly"`
	PriceHourly  float64    `json:"price_hourly"`
	Regions      []string   `json:"regions"`
	Available    bool       `json:"available"`
	Description  string     `json:"description"`
	DiskInfo     []diskInfo `json:"disk_info"`
}

type image struct {
	ID            int       `json:"id"`
	Name          string    `json:"name"`
	Type          string    `json:"type"`
	Distribution  string    `json:"distribution"`
	Slug          *string   `json:"slug"`
	Public        bool      `json:"public"`
	Regions       []string  `json:"regions"`
	CreatedAt     time.Time `json:"created_at"`
	MinDiskSize   int       `json:"min_disk_size"`
	SizeGigabytes float64   `json:"size_gigabytes"`
	Description   string    `json:"description"`
	Tags          []string  `json:"tags"`
	Status        string    `json:"status"`
}

var regionNames = []struct{ slug, name string }{
	{"nyc1", "New York 1"}, {"nyc3", "New York 3"}, {"sfo3", "San Francisco 3"},
	{"ams3", "Amsterdam 3"}, {"fra1", "Frankfurt 1"}, {"lon1", "London 1"},
	{"sgp1", "Singapore 1"}, {"tor1", "Toronto 1"}, {"blr1", "Bangalore 1"}, {"syd1", "Sydney 1"},
}

func regionSlugs() []string {
	out := make([]string, len(regionNames))
	for i, r := range regionNames {
		out[i] = r.slug
	}
	return out
}

// Prices as DigitalOcean lists them (USD); the hourly price times 672 hours is the monthly cap.
var sizes = func() []size {
	mk := func(slug, desc string, vcpus, memMiB, disk int, transfer, monthly, hourly float64) size {
		d := diskInfo{Type: "local"}
		d.Size.Amount, d.Size.Unit = disk, "gib"
		return size{Slug: slug, Memory: memMiB, Vcpus: vcpus, Disk: disk, Transfer: transfer,
			PriceMonthly: monthly, PriceHourly: hourly, Regions: regionSlugs(), Available: true,
			Description: desc, DiskInfo: []diskInfo{d}}
	}
	return []size{
		mk("s-1vcpu-512mb-10gb", "Basic", 1, 512, 10, 0.5, 4, 0.00595),
		mk("s-1vcpu-1gb", "Basic", 1, 1024, 25, 1, 6, 0.00893),
		mk("s-1vcpu-2gb", "Basic", 1, 2048, 50, 2, 12, 0.01786),
		mk("s-2vcpu-2gb", "Basic", 2, 2048, 60, 3, 18, 0.02679),
		mk("s-2vcpu-4gb", "Basic", 2, 4096, 80, 4, 24, 0.03571),
		mk("s-4vcpu-8gb", "Basic", 4, 8192, 160, 5, 48, 0.07143),
		mk("s-8vcpu-16gb", "Basic", 8, 16384, 320, 6, 96, 0.14286),
		mk("c-2", "CPU-Optimized", 2, 4096, 25, 4, 42, 0.0625),
		mk("c-4", "CPU-Optimized", 4, 8192, 50, 5, 84, 0.125),
		mk("g-2vcpu-8gb", "General Purpose", 2, 8192, 25, 4, 63, 0.09375),
	}
}()

func sizeBySlug(slug string) (size, bool) {
	i := slices.IndexFunc(sizes, func(s size) bool { return s.Slug == slug })
	if i < 0 {
		return size{}, false
	}
	return sizes[i], true
}

func regionBySlug(slug string) (region, bool) {
	for _, r := range regionNames {
		if r.slug == slug {
			return makeRegion(r.slug, r.name), true
		}
	}
	return region{}, false
}

func makeRegion(slug, name string) region {
	sz := make([]string, len(sizes))
	for i, s := range sizes {
		sz[i] = s.Slug
	}
	return region{Name: name, Slug: slug, Available: true, Sizes: sz,
		Features: []string{"backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"}}
}

var catalogEpoch = time.Date(2024, 4, 25, 0, 0, 0, 0, time.UTC)

// distributionImages are the public images; applicationImages the 1-Click ones.
var distributionImages = func() []image {
	mk := func(id int, slug, name, dist string, minDisk int) image {
		return image{ID: id, Name: name, Type: "base", Distribution: dist, Slug: &slug, Public: true,
			Regions: regionSlugs(), CreatedAt: catalogEpoch, MinDiskSize: minDisk, SizeGigabytes: 2.36,
			Description: dist + " " + name + " x64", Tags: []string{}, Status: "available"}
	}
	return []image{
		mk(155425106, "ubuntu-24-04-x64", "24.04 (LTS) x64", "Ubuntu", 7),
		mk(129211873, "ubuntu-22-04-x64", "22.04 (LTS) x64", "Ubuntu", 7),
		mk(161467423, "ubuntu-24-10-x64", "24.10 x64", "Ubuntu", 7),
		mk(135455358, "debian-12-x64", "12 x64", "Debian", 7),
		mk(121397380, "debian-11-x64", "11 x64", "Debian", 7),
		mk(159651797, "fedora-41-x64", "41 x64", "Fedora", 7),
		mk(145985412, "rockylinux-9-x64", "9 x64", "Rocky Linux", 10),
		mk(145985400, "centos-stream-9-x64", "Stream 9 x64", "CentOS", 10),
	}
}()

var applicationImages = func() []image {
	slug := "docker-20-04"
	return []image{{ID: 152188727, Name: "Docker 25.0.3 on Ubuntu 22.04", Type: "base", Distribution: "Ubuntu",
		Slug: &slug, Public: true, Regions: regionSlugs(), CreatedAt: catalogEpoch, MinDiskSize: 25,
		SizeGigabytes: 4.58, Description: "Docker 1-Click application", Tags: []string{}, Status: "available"}}
}()

// findImage resolves a create request's image, given as a slug or an ID, among
// the public images and the account's snapshots. Call with s.mu held.
func (s *Server) findImage(ref string) (image, bool) {
	id, err := strconv.Atoi(ref)
	for _, list := range [][]image{distributionImages, applicationImages, s.snapshots} {
		for _, img := range list {
			if (err == nil && img.ID == id) || (img.Slug != nil && *img.Slug == ref) {
				return img, true
			}
		}
	}
	return image{}, false
}

// AddSnapshot adds a private snapshot image (say, a prepared runner image) and returns its ID.
func (s *Server) AddSnapshot(name string, regions ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(regions) == 0 {
		regions = regionSlugs()
	}
	id := s.newID()
	s.snapshots = append(s.snapshots, image{ID: id, Name: name, Type: "snapshot", Distribution: "Ubuntu",
		Regions: regions, CreatedAt: s.clock.Now().UTC(), MinDiskSize: 25, SizeGigabytes: 3.1,
		Tags: []string{}, Status: "available"})
	return id
}

func (s *Server) listRegions(w http.ResponseWriter, r *http.Request) {
	all := make([]region, len(regionNames))
	for i, rn := range regionNames {
		all[i] = makeRegion(rn.slug, rn.name)
	}
	writePage(w, r, "regions", all)
}

func (s *Server) listSizes(w http.ResponseWriter, r *http.Request) {
	writePage(w, r, "sizes", sizes)
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	snapshots := slices.Clone(s.snapshots)
	s.mu.Unlock()
	var list []image
	switch {
	case q.Get("private") == "true":
		list = snapshots
	case q.Get("type") == "distribution":
		list = distributionImages
	case q.Get("type") == "application":
		list = applicationImages
	default:
		list = slices.Concat(distributionImages, applicationImages, snapshots)
	}
	if tag := q.Get("tag_name"); tag != "" {
		list = slices.DeleteFunc(slices.Clone(list), func(img image) bool { return !slices.Contains(img.Tags, tag) })
	}
	writePage(w, r, "images", list)
}

// writePage serves one page of items under key, with DigitalOcean's links and meta.
func writePage[T any](w http.ResponseWriter, r *http.Request, key string, items []T) {
	p, ok := paginate(w, r, len(items))
	if !ok {
		return
	}
	out := items[p.start:p.end]
	if out == nil {
		out = []T{}
	}
	writeJSON(w, http.StatusOK, map[string]any{key: out, "links": p.links, "meta": p.meta})
}

// HourlyPrice is a size's hourly price in USD, or 0 for an unknown slug.
func HourlyPrice(slug string) float64 {
	s, _ := sizeBySlug(slug)
	return s.PriceHourly
}
