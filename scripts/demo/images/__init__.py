"""Disk images of the demo client's servers: Debian bookworm guests running each role's real service.

Public interface::

    from drctl.demo.images import build_demo_images
    result = build_demo_images(plan, broken={"db01"}, progress=lambda who, msg: ...)
    result.images["db01"]        # Path of db01's raw disk (cached in $DRCTL_STATE_DIR/images)
    result.ssh_identity_file     # key logging in as root on every demo guest

Command line: ``python -m drctl.demo.images build [--plan PATH] [--break SERVER] [--json]``.
Building needs root, mmdebstrap, extlinux and the Debian mirror apt is configured with.
"""

from drctl.demo.images.builder import BUILDER_VERSION, DemoImages, build_demo_images, default_images_dir
from drctl.demo.images.rootfs import ImageBuildFailed

__all__ = ["BUILDER_VERSION", "DemoImages", "ImageBuildFailed", "build_demo_images", "default_images_dir"]
