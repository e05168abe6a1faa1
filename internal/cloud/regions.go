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
