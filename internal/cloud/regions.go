package cloud

import (
	"context"

	"github.com/digitalocean/godo"
)

// Region is a DigitalOcean region and the Droplet sizes it offers.
type Region struct {
	Slug      string
	Available bool // new Droplets can be created there
	Sizes     []string
}

// Regions lists DigitalOcean's regions.
func (d *DO) Regions(ctx context.Context) ([]Region, error) {
	list, err := listAll(ctx, d, "regions", func(opt *godo.ListOptions) ([]godo.Region, *godo.Response, error) {
		return d.c.Regions.List(ctx, opt)
	})
	if err != nil {
		return nil, err
	}
	out := make([]Region, len(list))
	for i, r := range list {
		out[i] = Region{Slug: r.Slug, Available: r.Available, Sizes: r.Sizes}
	}
	return out, nil
}

// Image is a Droplet image: a public one (by slug) or the account's own
// snapshot (by ID), and the regions it can start Droplets in.
type Image struct {
	ID      int
	Slug    string // empty for snapshots
	Regions []string
}

// Images lists the images Droplets can be created from: public ones and the
// account's own.
func (d *DO) Images(ctx context.Context) ([]Image, error) {
	list, err := listAll(ctx, d, "images", func(opt *godo.ListOptions) ([]godo.Image, *godo.Response, error) {
		return d.c.Images.List(ctx, opt)
	})
	if err != nil {
		return nil, err
	}
	out := make([]Image, len(list))
	for i, img := range list {
		out[i] = Image{ID: img.ID, Slug: img.Slug, Regions: img.Regions}
	}
	return out, nil
}
