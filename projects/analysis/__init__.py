"""Where a detector fails, in pictures and a report (``tools/analyze_results.py``): AP per class,
PR curves, the COCO error breakdown, a confusion matrix and the worst images."""
