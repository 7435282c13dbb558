"""The portal shell: layout, navigation per role, login pages, static assets."""
