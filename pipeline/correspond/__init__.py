"""Ground-truth patch correspondences derived from the renders' dense pixel correspondences."""
