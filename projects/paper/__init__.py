"""The paper's experiments at toy scale, on the library's public API: the CIFAR ResNets and plain
nets (section 4.2), the degradation study (Figure 6) and layer responses (Figure 7)."""
