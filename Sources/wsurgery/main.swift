import WSurgery
print(WSurgery.hdf5Version())
