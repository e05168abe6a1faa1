package cloud

import (
	"context"
	"errors"
	"fmt"

	"github.com/digitalocean/godo"
)

func toVolume(g *godo.Volume) Volume {
	return Volume{ID: g.ID, Name: g.Name, Region: g.Region.Slug, Description: g.Description, SizeGiB: int(g.SizeGigaBytes),
		FilesystemType: g.FilesystemType, FilesystemLabel: g.FilesystemLabel, DropletIDs: g.DropletIDs,
		Tags: g.Tags, Created: g.CreatedAt}
}

func (d *DO) CreateVolume(ctx context.Context, spec VolumeSpec) (Volume, error) {
	var g *godo.Volume
	// A create that fails with 5xx may have succeeded; a repeat then gets 409, so
	// callers can look the volume up by name. No blind retry.
	err := d.call(ctx, false, func() (resp *godo.Response, err error) {
		g, resp, err = d.c.Storage.CreateVolume(ctx, &godo.VolumeCreateRequest{Name: spec.Name, Region: spec.Region,
			Description: spec.Description, SizeGigaBytes: int64(spec.SizeGiB), FilesystemType: spec.FilesystemType,
			FilesystemLabel: spec.FilesystemLabel, Tags: spec.Tags})
		return resp, err
	})
	if err != nil {
		return Volume{}, fmt.Errorf("create volume %s in %s: %w", spec.Name, spec.Region, err)
	}
	return toVolume(g), nil
}

func (d *DO) ListVolumes(ctx context.Context, name, region string) ([]Volume, error) {
	list, err := listAll(ctx, d, "volumes", func(opt *godo.ListOptions) ([]godo.Volume, *godo.Response, error) {
		return d.c.Storage.ListVolumes(ctx, &godo.ListVolumeParams{Name: name, Region: region, ListOptions: opt})
	})
	if err != nil {
		return nil, err
	}
	out := make([]Volume, len(list))
	for i := range list {
		out[i] = toVolume(&list[i])
	}
	return out, nil
}

func (d *DO) GetVolume(ctx context.Context, id string) (Volume, error) {
	var g *godo.Volume
	err := d.call(ctx, true, func() (resp *godo.Response, err error) {
		g, resp, err = d.c.Storage.GetVolume(ctx, id)
		return resp, err
	})
	if err != nil {
		return Volume{}, fmt.Errorf("get volume %s: %w", id, err)
	}
	return toVolume(g), nil
}

func (d *DO) DeleteVolume(ctx context.Context, id string) error {
	err := d.call(ctx, true, func() (*godo.Response, error) { return d.c.Storage.DeleteVolume(ctx, id) })
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete volume %s: %w", id, err)
	}
	return nil
}

func (d *DO) AttachVolume(ctx context.Context, volumeID string, dropletID int) (Action, error) {
	return d.volumeAction(ctx, fmt.Sprintf("attach volume %s to droplet %d", volumeID, dropletID),
		func() (*godo.Action, *godo.Response, error) {
			return d.c.StorageActions.Attach(ctx, volumeID, dropletID)
		})
}

func (d *DO) DetachVolume(ctx context.Context, volumeID string, dropletID int) (Action, error) {
	return d.volumeAction(ctx, fmt.Sprintf("detach volume %s from droplet %d", volumeID, dropletID),
		func() (*godo.Action, *godo.Response, error) {
			return d.c.StorageActions.DetachByDropletID(ctx, volumeID, dropletID)
		})
}

func (d *DO) ResizeVolume(ctx context.Context, volumeID, region string, sizeGiB int) (Action, error) {
	return d.volumeAction(ctx, fmt.Sprintf("resize volume %s to %d GiB", volumeID, sizeGiB),
		func() (*godo.Action, *godo.Response, error) {
			return d.c.StorageActions.Resize(ctx, volumeID, sizeGiB, region)
		})
}

// volumeAction starts a volume action and waits for it. Not retried blindly: a
// repeat of an action that did start is refused ("pending event", "already
// attached"), which tells the caller more than a second attempt would.
func (d *DO) volumeAction(ctx context.Context, what string, start func() (*godo.Action, *godo.Response, error)) (Action, error) {
	var a *godo.Action
	err := d.call(ctx, false, func() (resp *godo.Response, err error) {
		a, resp, err = start()
		return resp, err
	})
	if err != nil {
		return Action{}, fmt.Errorf("%s: %w", what, err)
	}
	act, err := d.waitAction(ctx, a)
	if err != nil {
		return act, fmt.Errorf("%s: %w", what, err)
	}
	return act, nil
}
